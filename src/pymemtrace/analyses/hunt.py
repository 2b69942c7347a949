"""The hunt's statistics: leak or not, how often, how badly, what and where.

Pure functions of :class:`pymemtrace.snapshots.hunt.Measurements`; see
docs/hunt.md for the reasoning, in short:

- Only the **second half** of the measured calls is judged: the first half
  lets caches fill (``lru_cache``, ``re``'s cache, free lists, pymalloc's
  arenas).  Growth that stops is no leak.
- A series (live bytes in Python's allocators, malloc's heap, or the RSS)
  **grows** when its Mann-Kendall trend over the second half is
  significant (one-sided, p < 0.001), it rose at least :data:`MIN_RISES`
  times, it reached new highs in each quarter of the second half (a
  pattern that repeats, such as a cache cycling through its keys, comes
  back to the highs of the first half), and it still rose in the last
  quarter, about as often as in the quarter before (a binomial test: a
  cache filling up rises less and less).
- The size per call is the net change over the second half divided by its
  calls (the total, so a leak of 1 call in 10 gives a tenth of its size);
  Theil-Sen's slope (over pairs half the window apart) is kept as a check.
- **Frequency**: the share of the second half's calls after which the
  series rose (Python's allocators when they grow, else the RSS, whose
  4 KiB pages make it a lower bound for small leaks).
"""

from __future__ import annotations

import math

from pymemtrace.snapshots.hunt import HuntResult, Measurements, SiteGrowth, TypeGrowth

#: Fewest rises over the second half for a series to be said to grow.
MIN_RISES = 5
#: The confidence of a reference-count leak: objects.refcount_leaks asks for
#: growth in each third of its calls at a steady rate, which chance does not
#: give on an object no referrer accounts for.
REFCOUNT_CONFIDENCE = 0.99
#: Significance of the trend test.
P_TREND = 0.001
#: Below this many bytes per call, Python's allocators are flat.
HEAP_TOLERANCE = 1.0
#: Below this many bytes per call, the RSS is flat (pages are 4 KiB).
RSS_TOLERANCE = 64.0
#: A lone jump (see without_jumps): at least this many bytes ...
JUMP_BYTES = 64 * 1024
#: ... and this many times the median rise, at most MAX_JUMPS times.
JUMP_FACTOR = 16
MAX_JUMPS = 2
#: Most types and sites kept in a result.
TOP = 20
#: Points of a series the trend test looks at (evenly spaced).
MK_POINTS = 400


class Trend:
    """How one series moved over the second half of the calls."""

    __slots__ = ("per_call", "slope", "z", "p", "rises", "rises_q3", "rises_q4",
                 "net_q3", "net_q4", "net", "state", "first", "jumps", "peaks")

    def __init__(self, series, start: int) -> None:
        n = len(series)
        start = max(1, min(start, n - 2))
        values, self.jumps = without_jumps(series, start)
        mid = start + (n - start) // 2
        calls = n - start
        self.first = start
        self.net = values[-1] - values[start - 1]
        self.per_call = self.net / calls
        self.slope = theil_sen(values[start:])
        self.z, self.p = mann_kendall(_thin(values[start - 1:], MK_POINTS))
        up = [i for i in range(start, n) if values[i] > values[i - 1]]
        self.rises = len(up)
        self.rises_q3 = sum(1 for i in up if i < mid)
        self.rises_q4 = self.rises - self.rises_q3
        self.net_q3 = values[mid - 1] - values[start - 1]
        self.net_q4 = values[-1] - values[mid - 1]
        # highest value before the judged calls, in their first half, in their last
        self.peaks = (max(values[:start]), max(values[start:mid]), max(values[mid:]))
        self.state = "flat"

    def judge(self, tolerance: float) -> str:
        """``grows``, ``flat``, ``sparse`` (rose after fewer than
        MIN_RISES calls), ``stopped`` (grew, then no more) or ``unsure``
        (grew, but not steadily enough to tell)."""
        if self.per_call <= tolerance or self.rises == 0:
            state = "flat"
        elif self.rises < MIN_RISES:
            state = "sparse"  # a few steps: no steady growth
        elif self.p >= 0.05:
            state = "flat"  # ups and downs with no trend: churn
        elif self.rises_q4 == 0 or self.net_q4 <= 0:
            state = "stopped"
        elif self.peaks[2] - self.peaks[0] < 0.5 * self.net:
            # Its highs barely rose: it comes back to where it was before
            # the judged calls (churn, a cache cycling through its keys).
            state = "flat"
        elif min(self.peaks[1] - self.peaks[0], self.peaks[2] - self.peaks[1]) < 0.2 * self.net:
            state = "unsure"  # new highs in one quarter only
        elif self.p >= P_TREND or self.rises_q3 == 0:
            state = "unsure"
        elif binom_cdf(self.rises_q4, self.rises, 0.5) < P_TREND:
            state = "unsure"  # rises fewer and fewer: a cache filling up?
        else:
            state = "grows"
        self.state = state
        return state


def without_jumps(series, start: int) -> tuple:
    """The series with its lone jumps after ``start`` taken out, and the jumps.

    A lone jump is a rise of at least :data:`JUMP_BYTES` and
    :data:`JUMP_FACTOR` times the median rise, seen at most
    :data:`MAX_JUMPS` times: a one-off (a dict of the interpreter's that
    doubled, a block allocated before the counters started and reallocated
    since, a new arena in the RSS), not a leak's steady growth.
    """
    values = list(series)
    rises = sorted(values[i] - values[i - 1] for i in range(start, len(values))
                   if values[i] > values[i - 1])
    if not rises:
        return values, []
    if len(rises) <= MAX_JUMPS:
        floor = JUMP_BYTES  # a step or two, no steady growth to compare with
    else:
        floor = max(JUMP_BYTES, JUMP_FACTOR * rises[len(rises) // 2])
    jumps = [i for i in range(start, len(values)) if values[i] - values[i - 1] >= floor]
    if not jumps or len(jumps) > MAX_JUMPS:
        return values, []
    out = values[:start]
    shift = 0
    sizes = []
    for i in range(start, len(values)):
        step = values[i] - values[i - 1]
        if i in jumps:
            shift += step
            sizes.append(step)
        out.append(values[i] - shift)
    return out, sizes


def _thin(values: list, most: int) -> list:
    if len(values) <= most:
        return values
    step = len(values) / most
    return [values[int(i * step)] for i in range(most)] + [values[-1]]


def theil_sen(values) -> float:
    """Median slope over the pairs half the window apart (a Theil-Sen
    estimator on O(n) pairs); 0 for fewer than 2 values."""
    n = len(values)
    lag = n // 2
    if lag < 1:
        return 0.0
    slopes = sorted((values[i + lag] - values[i]) / lag for i in range(n - lag))
    k = len(slopes)
    return slopes[k // 2] if k % 2 else (slopes[k // 2 - 1] + slopes[k // 2]) / 2


def mann_kendall(values) -> tuple:
    """Mann-Kendall trend test: (z, one-sided p of an upward trend), with
    the variance corrected for ties; (0, 1) when all values are equal."""
    n = len(values)
    s = 0
    for i in range(n - 1):
        vi = values[i]
        for vj in values[i + 1:]:
            if vj > vi:
                s += 1
            elif vj < vi:
                s -= 1
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    var = n * (n - 1) * (2 * n + 5)
    var -= sum(t * (t - 1) * (2 * t + 5) for t in counts.values() if t > 1)
    var /= 18
    if var <= 0 or s == 0:
        return 0.0, 1.0 if s <= 0 else 0.5
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var)
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    total = 0.0
    for i in range(k + 1):
        total += math.comb(n, i) * p**i * (1 - p) ** (n - i)
    return min(1.0, total)


def _census_growth(measured: Measurements):
    """(objects, object bytes, [TypeGrowth]) per call between the half-way
    and the last census; object bytes None without those censuses."""
    points = dict(measured.censuses)
    n = measured.iterations
    half = n // 2
    if half not in points or n not in points:
        return 0.0, None, []
    old, new = points[half], points[n]
    calls = n - half
    rows = []
    floor = max(3, calls // 200)
    for qualname, row in new.types.items():
        before = old.types.get(qualname)
        count = row.count - (before.count if before else 0)
        size = row.bytes - (before.bytes if before else 0)
        if count >= floor or count > 0 and size >= 64 * calls:
            rows.append(TypeGrowth(row.name, qualname, count / calls, size / calls))
    rows.sort(key=lambda t: (-t.per_call, -t.bytes_per_call, t.qualname))
    objects = (new.total_count - old.total_count) / calls
    size = (new.total_bytes - old.total_bytes) / calls
    return objects, size, rows[:TOP]


def _sites(measured: Measurements, heap_per_call: float) -> list:
    """Sites per call.  The tracker counts whole blocks: a container whose
    array was allocated before it started and is reallocated during the
    tracked calls counts its whole new array, so the sites can add up to
    more than Python's allocators grew; they are then scaled down to it
    (the counters are exact), keeping their shares."""
    calls = measured.site_calls
    if not calls:
        return []
    out = []
    for d in measured.site_diffs:
        if d.bytes_diff <= 0:
            continue
        stack = tuple((f[0], f[1], f[2]) for f in d.stack)
        out.append(SiteGrowth(stack, d.bytes_diff / calls, d.blocks_diff / calls))
    total = sum(s.bytes_per_call for s in out)
    if heap_per_call > 0 and total > heap_per_call:
        for site in out:
            site.bytes_per_call *= heap_per_call / total
    out.sort(key=lambda s: (-s.bytes_per_call, s.stack))
    return out[:TOP]


def _rate(per_call: float, seconds_per_call: float) -> float:
    if seconds_per_call <= 0:
        return 0.0
    return per_call * 3600.0 / seconds_per_call


def analyse(measured: Measurements) -> HuntResult:
    """Verdict, confidence, frequency, severity, types and sites of a hunt."""
    n = measured.iterations
    half = n // 2
    # From the second call after the half-way census: the first call after
    # a census pays for what the census disturbed (free lists refilled).
    heap = Trend(measured.bytes, half + 1)
    rss = Trend(measured.rss, half + 1)
    blocks = Trend(measured.blocks, half + 1)
    heap_state = heap.judge(HEAP_TOLERANCE)
    rss_state = rss.judge(RSS_TOLERANCE)
    objects_pc, object_bytes_pc, types = _census_growth(measured)
    seconds_per_call = measured.seconds / n if n else 0.0
    calls = n - heap.first
    notes = []

    # Memory beyond Python's allocators: malloc (or mmap) in C code.  Seen
    # in malloc's own figures where there are some (glibc), else in the RSS.
    malloc = malloc_state = None
    malloc_pc = 0.0
    stride = max(1, measured.malloc_stride)
    if measured.malloc and len(measured.malloc) >= 8:
        malloc = Trend(measured.malloc, len(measured.malloc) // 2)
        malloc_state = malloc.judge(HEAP_TOLERANCE * stride)
        malloc_pc = malloc.per_call / stride
    # Under `pymemtrace native` the tracer's table counts every block malloc
    # and mmap hand out: the exact figure, before malloc's and the RSS.
    traced = traced_state = None
    if measured.native_bytes and len(measured.native_bytes) == n:
        traced = Trend(measured.native_bytes, half + 1)
        traced_state = traced.judge(HEAP_TOLERANCE)
    rss_beyond = rss.per_call - max(heap.per_call, 0.0)
    malloc_beyond = malloc_pc - max(heap.per_call, 0.0)
    native_leak = False
    traced_beyond = traced.per_call - max(heap.per_call, 0.0) if traced is not None else 0.0
    if traced_state == "grows" and traced_beyond > max(8.0, 0.5 * heap.per_call):
        native_leak, native = True, traced
        beyond, native_what = traced_beyond, "the native tracer's live allocations"
    elif malloc_state == "grows" and malloc_beyond > max(8.0, 0.5 * heap.per_call):
        native_leak, native = True, malloc
        beyond, native_what = malloc_beyond, "malloc's heap"
    elif rss_state == "grows" and rss_beyond > max(RSS_TOLERANCE, 0.5 * heap.per_call):
        native_leak, native = True, rss
        beyond, native_what = rss_beyond, "the RSS"

    if heap_state == "grows":
        verdict, measure = "leak", heap
        reason = (f"Python's allocators kept more memory after {heap.rises} of the last "
                  f"{calls} calls, and still did at the end")
    elif native_leak:
        verdict, measure = "leak", native
        reason = (f"{native_what} grew beyond Python's allocators and still grew at the end "
                  f"of the {calls} calls judged")
    elif "unsure" in (heap_state, rss_state, malloc_state):
        verdict = "inconclusive"
        measure = heap if heap_state == "unsure" else malloc if malloc_state == "unsure" else rss
        what = ("Python's allocators" if measure is heap else "malloc's heap"
                if measure is malloc else "the RSS")
        reason = (f"{what} grew after {measure.rises} of the last {calls} calls, "
                  "too rarely or less and less to tell: run more iterations")
    else:
        verdict, measure = "no-leak", heap
        if "sparse" in (heap_state, rss_state, malloc_state):
            reason = (f"memory rose after only a few of the last {calls} calls: no steady "
                      f"growth (a leak rarer than 1 call in {max(1, calls // 10)} needs "
                      "more iterations to be seen)")
        elif "stopped" in (heap_state, rss_state, malloc_state):
            reason = ("memory grew, then stopped growing before the last quarter of the "
                      "calls (a cache or pool that filled up)")
        else:
            reason = f"no lasting growth of memory over the last {calls} calls"

    # References C code takes and keeps grow no memory (on a singleton,
    # never): a leak all the same, the object can never be freed.
    ref_leak = verdict != "leak" and bool(measured.refcount)
    if ref_leak:
        top = measured.refcount[0]
        verdict = "leak"
        reason = (f"{top['refs_per_call']:g} extra reference(s) per call on object "
                  f"{top['repr']} of type {top['type']}, held by no Python object: a "
                  "reference leak in C code (an INCREF with no DECREF); memory need not "
                  "grow, but the object can never be freed")
    if ref_leak:
        confidence = REFCOUNT_CONFIDENCE
    elif verdict == "leak":
        confidence = 1.0 - max(measure.p, binom_cdf(0, measure.rises, 0.5))
    elif verdict == "inconclusive":
        confidence = 0.5
    else:
        # A leak rising on 1 call in calls/10.5 or more often rises at
        # least MIN_RISES times in these calls 95 % of the time (Poisson).
        confidence = 0.95
    confidence = round(min(confidence, 0.999), 3)

    leaking = verdict == "leak"
    frequency = 0.0
    if ref_leak:
        frequency = min(1.0, max(r["refs_per_call"] for r in measured.refcount))
    elif leaking and calls:
        # malloc's figures read after every k-th call only count rises of k
        # calls: the RSS (pages) is then the better lower bound.
        counted = rss if measure is malloc and stride > 1 else measure
        frequency = counted.rises / calls
    size = 0.0
    if leaking and not ref_leak:
        size = heap.per_call if measure is heap else beyond + max(heap.per_call, 0.0)
    unowned = 0.0
    if leaking and measure is heap and object_bytes_pc is not None:
        beyond_objects = heap.per_call - max(object_bytes_pc, 0.0)
        if beyond_objects > max(8.0, 0.25 * heap.per_call):
            unowned += beyond_objects
            notes.append("memory with no owning object: a raw buffer in Python's "
                         "allocators (PyMem_Malloc or PyMem_RawMalloc) that C code "
                         "does not free")
    if native_leak:
        unowned += beyond
        where = ("this process's capture (`pymemtrace report OUTDIR`) shows where" if traced is not None
                 else "`pymemtrace native` will show where")
        notes.append(f"{native_what} grew more than Python's allocators hold: memory from "
                     f"malloc or mmap in C code; {where}")
    elif leaking and measure is heap and rss.per_call < 0.5 * heap.per_call:
        notes.append("the RSS grew less than Python's allocators: pymalloc fills the "
                     "arenas it holds before it asks the system for more")
    if verdict != "no-leak":
        notes.extend(measured.site_notes)
    if leaking and not ref_leak and not types and measure is heap \
            and object_bytes_pc is not None \
            and object_bytes_pc <= 0:
        notes.append("no type of object grew: the memory is held by no Python object")

    per_call = {
        "bytes": heap.per_call,
        "blocks": blocks.per_call,
        "objects": objects_pc,
        "rss_bytes": rss.per_call,
        "native_bytes": traced.per_call if traced is not None else None,
        "malloc_bytes": malloc_pc if malloc is not None else None,
    }
    return HuntResult(
        verdict=verdict,
        confidence=confidence,
        reason=reason,
        iterations=n,
        warmup=measured.warmup,
        frequency=round(frequency, 4),
        per_call=per_call,
        types=types if leaking or verdict == "inconclusive" else [],
        sites=_sites(measured, heap.per_call) if verdict != "no-leak" else [],
        holders=list(measured.holders),
        refcount=list(measured.refcount),
        unowned_bytes_per_call=unowned,
        leak_bytes_per_call=size,
        calls_judged=calls,
        seconds_per_call=seconds_per_call,
        growth_per_hour=_rate(size, seconds_per_call),
        target=measured.target,
        notes=notes,
        series={
            "bytes": [v - measured.bytes[0] for v in measured.bytes],
            "blocks": [v - measured.blocks[0] for v in measured.blocks],
            "rss_bytes": [v - measured.rss[0] for v in measured.rss],
        },
    )
