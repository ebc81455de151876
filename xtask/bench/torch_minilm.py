"""PyTorch + Hugging Face transformers baseline for `cargo xtask bench`'s text-embedding number.

Same model files, texts, batch size, truncation (256 tokens), masked mean pooling and L2
normalisation as `pal embed --encoder text`. Prints JSON with texts per second.
"""
import argparse
import json
import time

import torch
from transformers import AutoModel, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, help="JSONL of {id, text}")
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    texts = [json.loads(l)["text"] for l in open(a.input) if l.strip()]
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    model = AutoModel.from_pretrained(a.model_dir).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), a.batch):
            b = tok(texts[i : i + a.batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
    secs = time.perf_counter() - t0
    print(json.dumps({"texts": len(texts), "seconds": secs, "items_per_second": len(texts) / secs,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
