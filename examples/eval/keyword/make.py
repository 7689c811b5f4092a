#!/usr/bin/env python3
"""Writes the keyword-heavy labelled set: corpus.jsonl (documents) and suite.jsonl (queries).

Each family holds 30 documents on one subject, each naming one identifier (an error code, a
part number, a host, a ticket id) once among sentences drawn from the family's pool: what
a sentence embedding ranks by the subject's wording, and BM25 finds by the rare term. A
query names one identifier in the family's own wording; that identifier's document is the
one relevant. Three queries per family. Deterministic (seeded): run it again to get the
same files.
"""
import json
import random
from pathlib import Path

rng = random.Random(20261201)
HERE = Path(__file__).parent

FAMILIES = [
    ("billing", "error code {code}", lambda: f"E{rng.randint(1000, 9999)}",
     ["The billing service raised {ident} while closing the monthly invoice run.",
      "When {ident} appears, the payment provider answered with an unexpected status.",
      "Retry the settlement after checking the ledger for half-written entries.",
      "Support should attach the invoice batch id to the ticket."],
     "what does {ident} mean in the billing service"),
    ("firmware", "part number {code}", lambda: f"XR-{rng.randint(1000, 9999)}-{rng.choice('ABCDEFGH')}",
     ["Router board {ident} needs the firmware update before it joins the mesh.",
      "Flash the image over the serial console; the web updater bricks {ident}.",
      "After the update the board reboots twice and reports its new version.",
      "Keep the old image on the second partition for a rollback."],
     "firmware update steps for {ident}"),
    ("database", "host {code}", lambda: f"db-prod-{rng.randint(10, 99)}{rng.choice('abcdef')}",
     ["Replication lag on {ident} grew past the alert threshold during the backup window.",
      "The fix was to move the nightly backup of {ident} to the replica.",
      "Vacuum ran long because of bloated indexes on the orders table.",
      "Page the database on-call if the lag does not recover within an hour."],
     "replication lag on {ident}"),
    ("incident", "ticket {code}", lambda: f"INC-{rng.randint(100000, 999999)}",
     ["Incident {ident}: the search API returned stale results for forty minutes.",
      "Root cause of {ident}: a cache node kept serving after its upstream was swapped.",
      "Mitigation: the cache was flushed and the node drained.",
      "Follow-up: add a version check between the cache and the index."],
     "root cause of {ident}"),
    ("pharma", "compound {code}", lambda: f"VX-{rng.randint(100, 999)}",
     ["Compound {ident} entered the stability study at forty degrees.",
      "Degradation of {ident} stayed under the limit after six months.",
      "The assay used a reversed-phase column and a gradient of acetonitrile.",
      "Samples are stored in amber vials to keep light out."],
     "stability results of {ident}"),
    ("shipping", "container {code}", lambda: f"MSKU{rng.randint(1000000, 9999999)}",
     ["Container {ident} was held at customs for a missing certificate of origin.",
      "The broker filed the certificate and {ident} was released the next morning.",
      "Demurrage charges apply after the fifth free day at the terminal.",
      "Track the vessel schedule for the connecting feeder."],
     "why was {ident} held at customs"),
    ("hr", "employee {code}", lambda: rng.choice(["Okonkwo", "Vasquez-Ruiz", "Nakamura", "Lindqvist",
                                                 "Abernathy", "Szymanski", "Ferreira", "Haddad",
                                                 "Kowalczyk", "Oyelaran", "Thorvaldsen", "Marchetti",
                                                 "Iwu", "Brannigan", "Castellanos", "Petrosyan",
                                                 "Delacroix", "Mwangi", "Sorensen", "Valtonen",
                                                 "Achterberg", "Baptiste", "Chowdhury", "Dragomir",
                                                 "Eklund", "Fitzgerald", "Gallardo", "Hakimi",
                                                 "Ishikawa", "Jovanovic", "Karlsson", "Laurent",
                                                 "Moreau", "Nieminen", "Oduya", "Pellegrini"]),
     ["{ident} asked to move the parental leave start by two weeks.",
      "The request from {ident} was approved by the team lead and HR.",
      "Payroll adjusts the salary split for the months of leave.",
      "Equipment stays with the employee during the leave."],
     "parental leave request of {ident}"),
    ("api", "endpoint {code}", lambda: f"/v{rng.randint(2, 4)}/{rng.choice(['ledger', 'quotes', 'rates', 'holds', 'payouts'])}/{rng.randint(10, 99)}",
     ["The endpoint {ident} is deprecated and answers 410 after the sunset date.",
      "Clients of {ident} should move to the batch variant with the same fields.",
      "Rate limits of the batch variant are per tenant, not per key.",
      "The changelog lists every renamed field."],
     "is {ident} deprecated"),
]

TEAMS = ["payments", "platform", "ops", "research", "logistics", "people"]
REGIONS = ["eu", "us", "apac"]

FILLER = [
    "The {family} team reviewed this during the weekly sync and agreed on the next steps.",
    "A similar {family} case last quarter was closed after the same checks.",
    "Escalate to the {family} lead when the usual checks do not settle it.",
    "The {family} dashboard shows the history of this item over the last month.",
    "Notes from the {family} review are linked from the team page.",
    "Owners rotate weekly; the {family} on-call keeps the log current.",
    "The {family} handbook describes the standard procedure in more detail.",
    "Customers were informed through the usual {family} channel.",
]

docs, queries = [], []
for family, label, make_ident, sentences, question in FAMILIES:
    seen = set()
    pool = [s for s in sentences[1:]] + [f.format(family=family) for f in FILLER]
    for n in range(30):
        ident = make_ident()
        while ident in seen:
            ident = make_ident()
        seen.add(ident)
        body = rng.sample(pool, 6)
        body.insert(rng.randrange(len(body) + 1), sentences[0])
        text = " ".join(s.format(ident=ident) for s in body)
        doc_id = f"kw/{family}-{n}"
        docs.append({
            "id": doc_id,
            "title": f"{family}: {label.format(code=ident)}",
            "body": text,
            "source": f"kb://{family}",
            "metadata": {"team": rng.choice(TEAMS), "region": rng.choice(REGIONS), "family": family},
        })
        if n % 10 == 3:
            queries.append({"query": question.format(ident=ident), "relevant_doc_ids": [doc_id]})

(HERE / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
(HERE / "suite.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
print(f"{len(docs)} documents, {len(queries)} queries")
