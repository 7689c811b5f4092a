"""sentence-transformers side of the benchmark: embeds a JSONL corpus on the CPU with a
fixed thread count and prints one JSON line of stats (same fields as `vecstream embed`).
The model is loaded once; --repeat runs the timed part several times in one process.

    python st_embed.py --model DIR --input corpus.jsonl --threads 2
"""

import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="fp32",
                   help="fp32, or fp16 (model.half(), on cuda: the same as vecstream's fp16)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device=args.device)
    if args.precision == "fp16":
        model = model.half()
    texts = [json.loads(line)["text"] for line in open(args.input, encoding="utf-8")]
    tok = model.tokenizer
    tokens = sum(len(tok(t, truncation=True, max_length=model.max_seq_length)["input_ids"]) for t in texts)
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size, normalize_embeddings=False)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "texts": len(texts), "tokens": tokens, "seconds": seconds,
        "texts_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
        "backend": "sentence-transformers", "precision": args.precision,
    }))


if __name__ == "__main__":
    main()
