//! A workflow started through temporalio-client completes on our worker, on the real
//! Temporal dev server.

use std::time::Duration;

use temporalio_sdk::{Runtime, Worker};
use vecstream_e2e::{config, require_service, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_workflow_completes_on_the_dev_server() {
    require_service("temporal", 7233);
    let cfg = config();
    let client = vecstream_workflows::connect(&cfg.temporal)
        .await
        .expect("connect");
    let state = vecstream_workflows::describe_namespace(&client, &cfg.temporal.namespace)
        .await
        .expect("namespace");
    assert_eq!(state, "NAMESPACE_STATE_REGISTERED");

    // A task queue of its own, so no other worker can take the task.
    let queue = unique("e2e-queue-");
    let runtime = Runtime::from_current_tokio(Default::default()).unwrap();
    let mut worker = Worker::new(
        &runtime,
        client.clone(),
        vecstream_workflows::worker_options(&queue).unwrap(),
    )
    .unwrap();
    let shutdown = worker.shutdown_handle();

    let probe = unique("probe-");
    let check = async {
        let answer =
            vecstream_workflows::run_health_check(&client, &queue, &probe, Duration::from_secs(60))
                .await;
        shutdown();
        answer
    };
    let (worker_result, answer) = tokio::join!(worker.run(), check);
    worker_result.expect("worker ran and shut down cleanly");
    assert_eq!(
        answer.expect("workflow completed"),
        format!("pong: {probe}")
    );
}

#[tokio::test]
async fn wrong_namespace_is_reported_by_name() {
    require_service("temporal", 7233);
    let cfg = config();
    let client = vecstream_workflows::connect(&cfg.temporal)
        .await
        .expect("connect");
    let err = vecstream_workflows::describe_namespace(&client, "no-such-namespace")
        .await
        .expect_err("unknown namespace");
    assert!(err.to_string().contains("no-such-namespace"), "{err}");
}
