//! A collection is created in the real Weaviate, objects with vectors go in, nearVector
//! finds them, also through an alias; per-object batch errors are reported.

use serde_json::json;
use uuid::Uuid;
use vecstream_e2e::{config, require_service, unique};
use vecstream_weaviate::{BatchObject, CollectionSpec, Property, WeaviateClient};

fn object(collection: &str, id: Uuid, text: &str, vector: Vec<f32>) -> BatchObject {
    BatchObject {
        collection: collection.into(),
        tenant: None,
        id,
        properties: json!({ "doc_id": id.to_string(), "text": text }),
        vector,
    }
}

#[tokio::test]
async fn collection_objects_near_vector_and_alias() {
    require_service("weaviate", 8080);
    let client = WeaviateClient::new(&config().weaviate).unwrap();
    assert!(client.version().await.unwrap().starts_with("1."));

    let name = unique("E2e_");
    let spec = CollectionSpec {
        name: name.clone(),
        properties: vec![Property::keyword("doc_id"), Property::new("text", "text")],
        distance: "cosine".into(),
        tenancy: vecstream_weaviate::Tenancy::Filter,
    };
    assert!(client.ensure_collection(&spec).await.unwrap(), "created");
    assert!(
        !client.ensure_collection(&spec).await.unwrap(),
        "second call finds it"
    );

    let ids: Vec<Uuid> = (0..3)
        .map(|i| vecstream_core::chunk_id(vecstream_core::DEFAULT_TENANT, &name, i, "e2e-model"))
        .collect();
    let objects = vec![
        object(&name, ids[0], "north", vec![1.0, 0.0, 0.0]),
        object(&name, ids[1], "east", vec![0.0, 1.0, 0.0]),
        object(&name, ids[2], "up", vec![0.0, 0.0, 1.0]),
    ];
    let outcome = client.upsert_batch(&objects).await.unwrap();
    assert_eq!(outcome.written.len(), 3, "{outcome:?}");
    assert!(outcome.failed.is_empty());
    // Re-delivery writes the same ids: still three objects.
    client.upsert_batch(&objects).await.unwrap();
    assert_eq!(client.count(&name).await.unwrap(), 3);

    let hits = client
        .near_vector(&name, &[0.1, 0.9, 0.0], 2, &["doc_id", "text"])
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, ids[1], "east is nearest");
    assert_eq!(hits[0].properties["text"], "east");
    assert!(hits[0].distance < hits[1].distance);

    // A wrong vector length fails that object only.
    let mixed = vec![
        object(&name, Uuid::new_v4(), "ok", vec![0.5, 0.5, 0.0]),
        object(&name, Uuid::new_v4(), "bad", vec![1.0]),
    ];
    let outcome = client.upsert_batch(&mixed).await.unwrap();
    assert_eq!(outcome.written, vec![mixed[0].id]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].0, mixed[1].id);

    // An alias resolves to the collection and answers queries.
    let alias = unique("E2eAlias_");
    client.set_alias(&alias, &name).await.unwrap();
    assert_eq!(
        client.resolve_alias(&alias).await.unwrap().as_deref(),
        Some(name.as_str())
    );
    let via_alias = client
        .near_vector(&alias, &[0.0, 0.0, 1.0], 1, &["text"])
        .await
        .unwrap();
    assert_eq!(via_alias[0].id, ids[2]);

    client.delete_alias(&alias).await.unwrap();
    assert_eq!(client.resolve_alias(&alias).await.unwrap(), None);
    client.delete_collection(&name).await.unwrap();
    assert!(!client.collection_exists(&name).await.unwrap());
}
