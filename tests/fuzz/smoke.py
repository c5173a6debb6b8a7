#!/usr/bin/env python3
"""One bounded libFuzzer run of a harness from its seed corpus: the CI smoke test of suite 'fuzz'.

    smoke.py HARNESS SEED_DIR SECONDS [DICT]

New inputs go to a scratch corpus, never into the seed directory. Exits with the harness's
status: non-zero on a crash, an assertion, a sanitizer report, a leak or a timeout, with the
path of the saved reproducer in libFuzzer's output.
"""
import os
import subprocess
import sys
import tempfile


def main():
    harness, seeds, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
    dictionary = sys.argv[4] if len(sys.argv) > 4 else None
    work = tempfile.mkdtemp(prefix="rpool-fuzz-")
    corpus = os.path.join(work, "corpus")
    os.mkdir(corpus)
    cmd = [harness, f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
           "-print_final_stats=1", f"-artifact_prefix={work}/"]
    if dictionary:
        cmd.append(f"-dict={dictionary}")
    cmd += [corpus, seeds]
    print(" ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        print(f"{os.path.basename(harness)}: exit {rc}; reproducer (crash-*, timeout-*, leak-*) "
              f"in {work}", flush=True)
    else:
        subprocess.call(["rm", "-rf", work])
    # libFuzzer reports a crash with exit status 77, which meson reads as "skipped".
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
