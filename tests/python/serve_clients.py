"""Embeds texts through `vecstream serve` with OpenAI's stock Python client.

Reads `{"id": ..., "text": ...}` lines and writes one line per text with the vector the
client returned with its default encoding (base64, decoded by the client) and with
`encoding_format="float"`, plus the usage the server reported:

    python serve_clients.py --base-url http://127.0.0.1:8088/v1 --model MODEL \
        --input texts.jsonl --output out.jsonl
"""

import argparse
import json
import sys

import openai


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--api-key", default="unused")
    args = p.parse_args()

    rows = [json.loads(line) for line in open(args.input, encoding="utf-8") if line.strip()]
    texts = [r["text"] for r in rows]
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    default = client.embeddings.create(model=args.model, input=texts)
    floats = client.embeddings.create(model=args.model, input=texts, encoding_format="float")
    single = client.embeddings.create(model=args.model, input=texts[0])
    if len(default.data) != len(texts) or len(floats.data) != len(texts):
        print(f"expected {len(texts)} vectors", file=sys.stderr)
        return 1
    with open(args.output, "w", encoding="utf-8") as out:
        for row, d, f in zip(rows, default.data, floats.data):
            out.write(json.dumps({
                "id": row["id"],
                "index": d.index,
                "vector": list(d.embedding),
                "float_vector": list(f.embedding),
            }) + "\n")
    print(json.dumps({
        "model": default.model,
        "prompt_tokens": default.usage.prompt_tokens,
        "total_tokens": default.usage.total_tokens,
        "single_len": len(single.data[0].embedding),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
