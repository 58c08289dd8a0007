"""Benchmark: a multistream dump read through its index and in parallel, against today's sequential pass.

    .venv/bin/python bench/dumps.py --size-mb 1024 [--repeats 3]   (standalone; bench/run.py calls bench_dumps)

Writes bench/cleaning.py's seeded synthetic dump as Wikipedia's pages-articles-multistream (100 pages a bzip2
stream) with its index, in three sizes, each the start of the next: a quarter, a half and the full --size-mb
MB of XML. Then, each fetch in a fresh Python process (`kinject.data.fetch_dump`, interpreter start-up and
imports apart), interleaved round by round so that the load of a shared machine falls on both sides alike,
best of --repeats each:

- selection: 1,000 titles of the quarter (so in every dump), picked at random over it ("scattered": ~1,000
  streams of 100 pages) or as 10 runs of 100 consecutive pages ("clustered": ~10 streams), through the index,
  against today's pass (the same titles, the dump without its index), on the half and on the full dump:
  seconds, and the exports compared byte for byte;
- full scan: every article page, on `os.cpu_count()` processes, against today's one-thread pass and against
  `bzip2 -dc > /dev/null` (decompression alone) on the quarter: MB/s of XML; on the full dump, once each,
  with the peak RSS (the process's high-water mark, or its largest pool worker's) against the quarter's.
"""

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
from kinject.data import fetch_dump
src, out, counts, kb, threads = sys.argv[1:6]
start, cpu = time.perf_counter(), time.process_time()
fetch_dump(src, "bench", out, counts, knowledge_base=json.loads(kb), threads=int(threads))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(seconds, max(own, kids.ru_maxrss), cpu, kids.ru_utime + kids.ru_stime)  # kB, CPU s (imports apart)
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


def prefix(dump: Path, streams: list, fraction: float, out: Path) -> int:
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


def make_dumps(size_mb: float, tmp: Path, seed: int) -> tuple[dict, dict, list]:
    """The full synthetic multistream dump and its index (kept when already in tmp), its quarter and half (cut
    from it), the same three under names without an index next to them (today's pass); their XML sizes."""
    names = ("quarter", "half", "full")
    tmp.mkdir(parents=True, exist_ok=True)
    dumps = {n: tmp / f"{n}wiki-20231101-pages-articles-multistream.xml.bz2" for n in names}
    sizes_json = tmp / f"sizes-{size_mb:g}-{seed}.json"
    if not sizes_json.exists():
        started = time.perf_counter()
        sizes = {"full": cleaning.synthetic_dumps([dumps["full"]], [size_mb], seed, multistream=True)[0]}
        streams = json.loads(Path(f"{dumps['full']}.streams.json").read_text())
        for n, fraction in (("quarter", 0.25), ("half", 0.5)):
            sizes[n] = prefix(dumps["full"], streams, fraction, dumps[n])
        print(f"synthetic multistream dumps written in {time.perf_counter() - started:.0f} s", flush=True)
        sizes_json.write_text(json.dumps(sizes))
    sizes = json.loads(sizes_json.read_text())
    streams = json.loads(Path(f"{dumps['full']}.streams.json").read_text())
    bare = {}  # the same dumps under a name without an index: today's pass
    for n, dump in dumps.items():
        bare[n] = tmp / "bare" / n / "pages.xml.bz2"
        bare[n].parent.mkdir(parents=True, exist_ok=True)
        if not bare[n].exists():
            os.link(dump, bare[n])
    return dumps, bare, sizes, streams


def bench_dumps(size_mb: float, tmp: Path, seed: int = 0, repeats: int = 3) -> list[dict]:
    names = ("quarter", "half", "full")
    dumps, bare, sizes, streams = make_dumps(size_mb, tmp, seed)
    entries = bz2.decompress(cleaning.index_of(dumps["quarter"]).read_bytes()).decode().splitlines()
    rng = random.Random(seed)
    picks = {"scattered": [e.split(":", 2)[2] for e in rng.sample(entries, 1000)]}
    starts = sorted(rng.sample(range(len(entries) - 100), 10))
    picks["clustered"] = list(dict.fromkeys(e.split(":", 2)[2] for s in starts for e in entries[s: s + 100]))
    titles = {}
    for kind, chosen in picks.items():
        titles[kind] = tmp / f"{kind}.txt"
        titles[kind].write_text("\n".join(chosen) + "\n", encoding="utf-8")
    threads = os.cpu_count()
    out = tmp / "out.xml"
    m: dict[str, list[dict]] = {}

    def run(key, *args, **kwargs):
        m.setdefault(key, []).append(fetch(*args, **kwargs))

    t_bzip2 = []
    for i in range(repeats):  # interleaved: one of each per round
        print(f"round {i + 1} of {repeats}", flush=True)
        for kind, path in titles.items():
            for n in ("half", "full"):
                run(f"index {kind} {n}", dumps[n], out, threads, titles=str(path))
        run("scan quarter", dumps["quarter"], out, threads)
        run("today scan quarter", bare["quarter"], out, 1)
        with open(os.devnull, "wb") as null:
            t_bzip2.append(wall(["bzip2", "-dc", str(dumps["quarter"])], stdout=null))
    # today's pass over the full dump for each selection (a whole pass each), and the parallel scan of it
    for kind, path in titles.items():
        print(f"today's pass, {kind} titles", flush=True)
        run(f"today {kind} full", bare["full"], out, 1, titles=str(path))
    print("the full dump's parallel scan", flush=True)
    run("scan full", dumps["full"], out, threads)

    best = {key: min(runs, key=lambda r: r["s"]) for key, runs in m.items()}
    xml_mb = {n: sizes[n] / 1e6 for n in names}
    label = {n: f"{xml_mb[n]:,.0f} MB XML (the {n}, {dumps[n].stat().st_size / 1e6:,.0f} MB bz2)" for n in names}
    label["full"] = (f"{xml_mb['full']:,.0f} MB XML ({dumps['full'].stat().st_size / 1e6:,.0f} MB bz2, "
                     f"{best['scan full']['counts']['pages_in']:,} pages, {len(streams) - 2:,} page streams)")
    rows = []
    for kind in titles:
        ours, today, half = best[f"index {kind} full"], best[f"today {kind} full"], best[f"index {kind} half"]
        same = ours["sha"] == today["sha"]
        c = ours["counts"]
        rows.append(timed_row(
            f"dumps: select 1,000 titles ({kind})", label["full"], "today's pass (no index, 1 thread)", today["s"],
            f"through the index, {threads} processes", ours["s"],
            f"{c['streams_read']} stream reads ({c['pages_in']:,} pages, {c['xml_bytes'] / 1e6:,.1f} MB of XML) for "
            f"{c['requested']} titles, {c['pages_kept']} kept; export {'identical' if same else 'DIFFERENT'} "
            f"(sha256); best of {len(m[f'index {kind} full'])} vs 1 run; peak RSS {ours['rss']:.0f} MB vs "
            f"{today['rss']:.0f} MB; CPU s (main + workers) {sum(ours['cpu']):.1f} vs {sum(today['cpu']):.1f}",
            same))
        rows.append(timed_row(
            f"dumps: select 1,000 titles ({kind}), dump doubled", label["full"], "the same on the half",
            half["s"], "the full dump", ours["s"],
            f"ratio ~1: flat; best of {repeats} each; {half['counts']['streams_read']} vs {c['streams_read']} stream "
            f"reads; the half's export identical to the full's: {half['sha'] == ours['sha']}",
            half["sha"] == ours["sha"]))
    ours, today = best["scan quarter"], best["today scan quarter"]
    q = xml_mb["quarter"]
    main_cpu, workers_cpu = ours["cpu"]
    idle = max(main_cpu, (main_cpu + workers_cpu) / threads)
    rows.append(cleaning.compared(
        "dumps: full scan vs today's fetch", label["quarter"], "today's fetch_dump (1 thread)", q / today["s"],
        f"parallel scan, {threads} processes", q / ours["s"], "MB/s",
        f"best of {repeats} each, interleaved; export {'identical' if ours['sha'] == today['sha'] else 'DIFFERENT'}; "
        f"CPU s: main {main_cpu:.1f} + workers {workers_cpu:.1f} vs today {sum(today['cpu']):.1f}; on {threads} idle "
        f"cores its wall time would be >= {idle:.1f} s (max of the main process's CPU and all CPU / cores): "
        f"{q / idle:.1f} MB/s, x{sum(today['cpu']) / idle:.2f} today's CPU-bound rate"))
    rows.append(cleaning.compared(
        "dumps: full scan vs bz2 alone", label["quarter"], "bzip2 -dc > /dev/null (libbz2, 1 thread)",
        q / min(t_bzip2), f"parallel scan, {threads} processes", q / ours["s"], "MB/s",
        f"best of {repeats} each, interleaved; the scan also parses every page and writes the article pages"))
    full, q_rss = best["scan full"], best["scan quarter"]["rss"]
    rows.append(cleaning.row(
        "dumps: full scan, the full dump", label["full"], f"parallel scan, {threads} processes",
        xml_mb["full"] / full["s"], "MB/s", "", f"one run: {full['s']:.1f} s; today's pass of a selection over the "
        f"same dump: {min(best[f'today {k} full']['s'] for k in titles):.1f} s; export of every article page"))
    rows.append(cleaning.row(
        "dumps: full scan, peak RSS", label["full"], f"parallel scan, {threads} processes", full["rss"], "MB",
        "ok" if full["rss"] < RSS_LIMIT_MB and full["rss"] < 1.25 * q_rss else
        f"TOO HIGH (goal < {RSS_LIMIT_MB} MB, flat)",
        f"{q_rss:.0f} MB on the quarter: x{full['rss'] / q_rss:.2f}; today's pass {today['rss']:.0f} MB on the quarter"))
    return rows


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
    args = p.parse_args(argv)
    if args.generate_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        make_dumps(args.size_mb, args.workdir, args.seed)
        return
    load, started = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kinject-bench-dumps-") as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        rows = bench_dumps(args.size_mb, tmp, args.seed, args.repeats)
    print(f"load average (1 / 5 / 15 min): {' / '.join(f'{x:.2f}' for x in load)} at the start, "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; wall time "
          f"{(time.monotonic() - started) / 60:.1f} min")
    print("\n".join(markdown(rows)))


if __name__ == "__main__":
    main()
