"""Benchmark: a multistream dump read through its index and in parallel, against today's sequential pass.

    .venv/bin/python bench/dumps.py --size-mb 1024 [--repeats 3]   (standalone; bench/run.py calls bench_dumps)

Writes bench/cleaning.py's seeded synthetic dump as Wikipedia's pages-articles-multistream (100 pages a bzip2
stream) with its index, and prefixes of it (its first streams, the dump as it was when smaller): 1/32, a quarter
and a half of its --size-mb MB of XML. Then, each fetch in a fresh Python process (`kinject.knowledge.data.fetch_dump`,
interpreter start-up and imports apart), interleaved round by round so that the load of a shared machine falls
on all sides alike, best of --repeats each:

- selection: 1,000 titles of the 1/32 prefix (so in every dump) as 10 runs of 100 consecutive pages
  ("clustered": ~10 streams of 100 pages), through the index, on the 1/32 prefix, the half and the full dump
  (flat when the dump doubles), against today's pass (the dump without its index) of the 1/32 prefix, scaled
  by size to the full dump: a whole pass whatever the titles. Exports compared by sha256;
- full scan: every article page of the full dump, on `os.cpu_count()` threads, against today's one-thread pass
  and against `bzip2 -dc > /dev/null` (decompression alone): MB/s of XML and CPU seconds (of the reading thread
  and of the decompressing threads: on a shared machine the wall time says how busy the others are, the CPU
  seconds bound what idle cores give); its peak RSS against the quarter's scan (run once).

--full-pass gives the rows of bench_full_pass instead: today's pass of the full dump itself, and 1,000 titles
at random over it ("scattered")."""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cleaning

ROOT = Path(__file__).resolve().parents[1]
RSS_LIMIT_MB = 500

_STAGE = """
import json, resource, sys, time
from kinject.knowledge.data import fetch_dump
src, out, counts, kb, threads = sys.argv[1:6]
start, cpu = time.perf_counter(), time.process_time()
main = time.thread_time()
fetch_dump(src, "bench", out, counts, knowledge_base=json.loads(kb), threads=int(threads))
seconds, cpu, main = time.perf_counter() - start, time.process_time() - cpu, time.thread_time() - main
own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # none: the pool is threads
print(seconds, max(own, kids.ru_maxrss), main, cpu - main)  # kB; CPU s of this thread and the others (imports apart)
"""


def fetch(src: Path, out: Path, threads: int = 1, **kb) -> dict:
    """One fetch_dump in a fresh process: seconds, peak RSS (MB), the export's sha256 and the counts."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    counts = out.with_suffix(".json")
    proc = subprocess.run([sys.executable, "-c", _STAGE, str(src), str(out), str(counts),
                           json.dumps({"source": "dump", **kb}), str(threads)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"fetch of {src} failed: {proc.stderr.strip()[-500:]}")
    seconds, peak_kb, cpu_main, cpu_workers = map(float, proc.stdout.split()[-4:])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return {"s": seconds, "rss": peak_kb / 1024, "sha": digest, "cpu": (cpu_main, cpu_workers),
            "counts": json.loads(counts.read_text())}


def prefix(dump: Path, streams: list, fraction: float, out: Path) -> int:  # noqa: D401
    """The first `fraction` of a multistream dump (its header and the page streams before that much XML, then
    the closing tag's stream) and its index: the dump as it was when smaller. Returns its XML bytes."""
    total = streams[-1][1]
    cut, xml_before = next((o, x) for o, x in streams[1:] if x >= fraction * total)
    tail = bz2.compress(b"</mediawiki>\n")
    with open(dump, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read(cut))
        dst.write(tail)
    lines = bz2.decompress(cleaning.index_of(dump).read_bytes()).decode().splitlines(keepends=True)
    cleaning.index_of(out).write_bytes(bz2.compress("".join(l for l in lines if int(l.split(":", 1)[0]) < cut)
                                                    .encode()))
    return xml_before + len(b"</mediawiki>\n")


def wall(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    return time.perf_counter() - start


def timed_row(stage, size, naive, naive_s, ours, our_s, note, same=True):
    """A row in bench/run.py's format for times: ratio = how many times less time kinject's way takes."""
    ratio = naive_s / our_s
    verdict = ("ok" if ratio >= 0.5 else "SLOW (> 2x slower)") if same else "DIFFERENT OUTPUT"
    return {"stage": stage, "size": size, "compared with": naive, "its value": naive_s, "kinject": ours,
            "kinject value": our_s, "unit": "s", "ratio": ratio, "verdict": verdict, "note": note}


CUTS = {"small": 1 / 32, "quarter": 1 / 4, "half": 1 / 2}  # prefixes cut from the full dump


def make_dumps(size_mb: float, tmp: Path, seed: int) -> tuple[dict, dict, dict, list]:
    """The full synthetic multistream dump and its index (kept when already in tmp), prefixes of it (CUTS: its
    first streams, the dump as it was when smaller), the same under names without an index next to them
    (today's pass); their XML sizes and the full dump's streams."""
    names = (*CUTS, "full")
    tmp.mkdir(parents=True, exist_ok=True)
    dumps = {n: tmp / f"{n}wiki-20231101-pages-articles-multistream.xml.bz2" for n in names}
    sizes_json = tmp / f"sizes-{size_mb:g}-{seed}.json"
    if not sizes_json.exists():
        started = time.perf_counter()
        sizes = {"full": cleaning.synthetic_dumps([dumps["full"]], [size_mb], seed, multistream=True)[0]}
        print(f"synthetic multistream dump written in {time.perf_counter() - started:.0f} s", flush=True)
        sizes_json.write_text(json.dumps(sizes))
    sizes = json.loads(sizes_json.read_text())
    streams = json.loads(Path(f"{dumps['full']}.streams.json").read_text())
    for n, fraction in CUTS.items():
        if n not in sizes or not dumps[n].exists():
            sizes[n] = prefix(dumps["full"], streams, fraction, dumps[n])
    sizes_json.write_text(json.dumps(sizes))
    bare = {}  # the same dumps under a name without an index: today's pass
    for n, dump in dumps.items():
        bare[n] = tmp / "bare" / n / "pages.xml.bz2"
        bare[n].parent.mkdir(parents=True, exist_ok=True)
        if not bare[n].exists():
            os.link(dump, bare[n])
    return dumps, bare, sizes, streams


def bench_dumps(size_mb: float, tmp: Path, seed: int = 0, repeats: int = 3) -> list[dict]:
    """The rows; see the module's docstring."""
    dumps, bare, sizes, streams = make_dumps(size_mb, tmp, seed)
    entries = bz2.decompress(cleaning.index_of(dumps["small"]).read_bytes()).decode().splitlines()
    if len(entries) < 1000:
        sys.exit(f"bench/dumps.py: the {size_mb:g} MB dump's 1/32 prefix holds {len(entries)} pages, fewer than the "
                 "1,000 titles selected: give --size-mb 300 or more")
    rng = random.Random(seed)
    starts = sorted(rng.sample(range(len(entries) - 100), 10))
    chosen = list(dict.fromkeys(e.split(":", 2)[2] for s in starts for e in entries[s: s + 100]))
    titles = tmp / "clustered.txt"
    titles.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    threads, out = os.cpu_count(), tmp / "out.xml"
    m: dict[str, list[dict]] = {}

    def run(key, *args, **kwargs):
        m.setdefault(key, []).append(fetch(*args, **kwargs))

    t_bzip2 = []
    for i in range(repeats):  # interleaved: one of each per round
        print(f"round {i + 1} of {repeats}", flush=True)
        for n in ("small", "half", "full"):
            run(f"index {n}", dumps[n], out, threads, titles=str(titles))
        run("today small", bare["small"], out, 1, titles=str(titles))
        run("scan full", dumps["full"], out, threads)
        run("today scan full", bare["full"], out, 1)
        with open(os.devnull, "wb") as null:
            t_bzip2.append(wall(["bzip2", "-dc", str(dumps["full"])], stdout=null))
    print("the quarter's parallel scan", flush=True)
    run("scan quarter", dumps["quarter"], out, threads)

    best = {key: min(runs, key=lambda r: r["s"]) for key, runs in m.items()}
    mb = {n: sizes[n] / 1e6 for n in sizes}
    label = {n: f"{mb[n]:,.0f} MB XML ({dumps[n].stat().st_size / 1e6:,.0f} MB bz2; the {n} prefix)" for n in CUTS}
    label["full"] = (f"{mb['full']:,.0f} MB XML ({dumps['full'].stat().st_size / 1e6:,.0f} MB bz2, "
                     f"{len(streams) - 2:,} page streams of 100 pages)")
    scale = mb["full"] / mb["small"]
    ours, today, small = best["index full"], best["today small"], best["index small"]
    c = ours["counts"]
    same = small["sha"] == today["sha"] == ours["sha"] == best["index half"]["sha"]
    today_full, today_cpu = today["s"] * scale, sum(today["cpu"]) * scale
    rows = [
        timed_row("dumps: select 1,000 titles (clustered)", label["full"],
                  f"today's pass (no index, 1 thread), extrapolated x{scale:.0f} from the {mb['small']:.0f} MB prefix",
                  today_full, f"through the index, {threads} threads", ours["s"],
                  f"{c['streams_read']} stream reads ({c['pages_in']:,} pages, {c['xml_bytes'] / 1e6:,.1f} MB of XML) "
                  f"for {c['requested']} titles (10 runs of 100 consecutive pages), {c['pages_kept']} kept; export "
                  f"{'identical' if same else 'DIFFERENT'} (sha256: today's pass of the prefix, the index on the "
                  f"prefix, the half and the full dump); best of {repeats} each; today's pass: {today['s']:.1f} s on "
                  f"the prefix (a whole pass: linear in the dump's size); CPU s {sum(ours['cpu']):.2f} vs "
                  f"{today_cpu:.0f} (x{today_cpu / sum(ours['cpu']):.0f}); peak RSS {ours['rss']:.0f} MB", same),
        timed_row("dumps: select 1,000 titles, the dump doubled", label["full"], "the same on the half",
                  best["index half"]["s"], "the full dump", ours["s"],
                  f"the same stream reads; the rest grows with the index, read whole (ratio 1 would be flat); best "
                  f"of {repeats} each; on the {mb['small']:.0f} MB prefix: {small['s']:.2f} s; "
                  f"{best['index half']['counts']['streams_read']} vs {c['streams_read']} stream reads", same),
    ]
    ours, today_q = best["scan full"], best["today scan full"]
    q = mb["full"]
    main_cpu, workers_cpu = ours["cpu"]
    idle = max(main_cpu, (main_cpu + workers_cpu) / threads)
    rows.append(cleaning.compared(
        "dumps: full scan vs today's fetch", label["full"], "today's fetch_dump (1 thread)", q / today_q["s"],
        f"parallel scan, {threads} threads", q / ours["s"], "MB/s",
        f"best of {repeats} each, interleaved; export {'identical' if ours['sha'] == today_q['sha'] else 'DIFFERENT'}; "
        f"CPU s: reading thread {main_cpu:.1f} + decompressing threads {workers_cpu:.1f} vs today's "
        f"{sum(today_q['cpu']):.1f}; bound on {threads} idle cores: >= {idle:.1f} s (the reading thread's CPU, or "
        f"all CPU / cores), <= {q / idle:.1f} MB/s, x{sum(today_q['cpu']) / idle:.2f} today's CPU time"))
    rows.append(cleaning.compared(
        "dumps: full scan vs bz2 alone", label["full"], "bzip2 -dc > /dev/null (libbz2, 1 thread)",
        q / min(t_bzip2), f"parallel scan, {threads} threads", q / ours["s"], "MB/s",
        f"best of {repeats} each, interleaved; the scan also parses every page and writes the article pages"))
    quarter = best["scan quarter"]
    rows.append(cleaning.row(
        "dumps: full scan, peak RSS", label["full"], f"parallel scan, {threads} threads", ours["rss"], "MB",
        "ok" if ours["rss"] < RSS_LIMIT_MB and ours["rss"] < 1.25 * quarter["rss"] else
        f"TOO HIGH (goal < {RSS_LIMIT_MB} MB, flat)",
        f"{quarter['rss']:.0f} MB on the {mb['quarter']:.0f} MB prefix (a quarter of it): "
        f"x{ours['rss'] / quarter['rss']:.2f}; today's pass {today_q['rss']:.0f} MB; "
        f"{mb['quarter'] / quarter['s']:.2f} MB/s on the quarter ({quarter['s']:.0f} s, one run)"))
    return rows


def bench_full_pass(size_mb: float, tmp: Path, seed: int = 0, repeats: int = 3) -> list[dict]:
    """Today's pass of the full dump itself, once (no extrapolation), with the clustered titles, against the
    selection through the index; and 1,000 titles at random over the whole dump through the index
    ("scattered": on a 1 GB dump they touch half its streams)."""
    dumps, bare, sizes, streams = make_dumps(size_mb, tmp, seed)
    titles, threads, out = tmp / "clustered.txt", os.cpu_count(), tmp / "out.xml"
    if not titles.exists():
        sys.exit(f"bench/dumps.py --full-pass: {titles} missing: run bench/dumps.py with this --workdir first")
    entries = bz2.decompress(cleaning.index_of(dumps["full"]).read_bytes()).decode().splitlines()
    scattered = tmp / "scattered.txt"
    scattered.write_text("\n".join(e.split(":", 2)[2] for e in random.Random(seed).sample(entries, 1000)) + "\n",
                         encoding="utf-8")
    print("today's pass of the full dump", flush=True)
    today = fetch(bare["full"], out, 1, titles=str(titles))
    ours = min((fetch(dumps["full"], out, threads, titles=str(titles)) for _ in range(repeats)), key=lambda r: r["s"])
    print("scattered titles through the index", flush=True)
    spread = fetch(dumps["full"], out, threads, titles=str(scattered))
    label = f"{sizes['full'] / 1e6:,.0f} MB XML (the full dump, {len(streams) - 2:,} page streams of 100 pages)"
    c, sc = ours["counts"], spread["counts"]
    same = ours["sha"] == today["sha"]
    return [
        timed_row("dumps: select 1,000 titles (clustered), measured", label, "today's pass (no index, 1 thread)",
                  today["s"], f"through the index, {threads} threads", ours["s"],
                  f"today's pass run once on the full dump itself; {c['streams_read']} stream reads for "
                  f"{c['requested']} titles; export {'identical' if same else 'DIFFERENT'} (sha256); CPU s "
                  f"{sum(ours['cpu']):.2f} vs {sum(today['cpu']):.1f}; peak RSS {ours['rss']:.0f} vs "
                  f"{today['rss']:.0f} MB", same),
        cleaning.row("dumps: select 1,000 titles (scattered)", label, f"through the index, {threads} threads",
                     spread["s"], "s", "",
                     f"one run; 1,000 titles at random over the dump: {sc['streams_read']} stream "
                     f"reads of {len(streams) - 2:,} streams ({sc['xml_bytes'] / 1e6:,.0f} MB of XML decompressed), "
                     f"{sc['pages_kept']} kept; CPU s {sum(spread['cpu']):.1f} (today's pass: {sum(today['cpu']):.1f})"
                     f"; on English Wikipedia (~230,000 streams) 1,000 pages touch at most 1,000 streams"),
    ]


def markdown(rows: list[dict]) -> list[str]:
    cols = ["stage", "size", "compared with", "its value", "kinject", "kinject value", "unit", "ratio", "verdict",
            "note"]
    fmt = lambda v: "" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v)
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=1024, help="decompressed XML of the full synthetic dump (MB)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the interleaved timings (best of each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep the synthetic dumps here (made once, reused); default: a "
                   "temporary directory")
    p.add_argument("--generate-only", action="store_true", help="write the dumps into --workdir and stop")
    p.add_argument("--full-pass", action="store_true", help="only the rows of bench_full_pass (today's pass of the "
                   "full dump itself, a scattered selection), in --workdir after a run of the others")
    args = p.parse_args(argv)
    if args.generate_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        make_dumps(args.size_mb, args.workdir, args.seed)
        return
    load, started = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kinject-bench-dumps-") as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        rows = (bench_full_pass if args.full_pass else bench_dumps)(args.size_mb, tmp, args.seed, args.repeats)
    print(f"load average (1 / 5 / 15 min): {' / '.join(f'{x:.2f}' for x in load)} at the start, "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; wall time "
          f"{(time.monotonic() - started) / 60:.1f} min")
    print("\n".join(markdown(rows)))


if __name__ == "__main__":
    main()
