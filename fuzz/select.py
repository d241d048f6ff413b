"""Keeps at most N files of a fuzz corpus: those that together reach the most coverage edges.

    python3 select.py CONTROL_FILE N

CONTROL_FILE is a libFuzzer merge control file (`-merge=1 -merge_control_file=...`): it lists
the corpus files, then each one's edges (`COV <index> <edge> ...`). Files are picked greedily,
each the one adding the most edges not yet reached (the smaller first on a tie); the rest
are deleted.
"""

import heapq
import os
import sys


def main() -> None:
    control, limit = sys.argv[1], int(sys.argv[2])
    with open(control) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    paths = lines[2 : 2 + count]
    edges: dict[int, set[int]] = {}
    for line in lines[2 + count :]:
        if line.startswith("COV "):
            index, *cov = line.split()[1:]
            edges[int(index)] = set(map(int, cov))
    size = {i: os.path.getsize(p) for i, p in enumerate(paths)}
    reached: set[int] = set()
    kept: list[int] = []
    # Lazy greedy: a file's gain only shrinks as others are kept.
    heap = [(-len(e), size[i], i) for i, e in edges.items()]
    heapq.heapify(heap)
    while heap and len(kept) < limit:
        _, _, i = heapq.heappop(heap)
        gain = len(edges[i] - reached)
        if gain == 0:
            break
        if heap and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, size[i], i))
            continue
        kept.append(i)
        reached |= edges[i]
    keep = {paths[i] for i in kept}
    for p in paths:
        if p not in keep:
            os.remove(p)
    total = len(set().union(*edges.values())) if edges else 0
    print(f"kept {len(kept)} of {count} files, {len(reached)} of {total} edges")


if __name__ == "__main__":
    main()
