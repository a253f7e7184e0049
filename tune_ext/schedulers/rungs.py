"""The rung book: every result a successive-halving scheduler ranks, by bracket and rung (pure: no
Ray import).

SHA, Hyperband, ASHA and adaptive ASHA differ in *when* they decide, not in what they record. Each
runs brackets of rungs with milestones r_0 < .. < r_s (``brackets.py``); a trial belongs to one
bracket, and a result of it that reaches a rung is recorded there as (score, arrival). Scores are
"higher is better": the scheduler maps its metric and mode, and every non-finite value to -inf,
which ranks behind everything, other -inf values included. Ties rank by arrival (earlier first)
or, for a book made with ``ties_by_arrival=False`` (ASHA "stopping"), not at all.

The book keeps, per trial, where it stands: the highest rung it has a record in (-1: none),
whether it *waits* there (paused until promoted or the rung completes), whether it is *alive*
(not stopped, errored or removed) and whether it was *stopped* for good. A live trial that does not
wait is heading to the next rung. What the schedulers ask of it:

- ``reached(trial_id, t)``: the highest rung a result at time ``t`` reaches that the trial has no
  record in yet (results may overstep rungs), or -1.
- ``record(trial_id, rung, score)``: record a result in every rung above the trial's last record
  up to ``rung``; returns how many records of that rung rank ahead of it.
- ``continues(trial_id, t, score)``: ASHA "stopping": record the result and answer whether it is
  in the top 1/eta of its rung at arrival (a trial that is not is stopped).
- ``promotable(bracket)``: ASHA "promotion" (Li et al. 2020, Algorithm 2, get_job): the best
  waiting trial in the top floor(n/eta) of the highest rung that has one; ``promote`` it.
- ``complete_rungs(bracket)``: SHA (Jamieson & Talwalkar 2016): close every rung whose trials have
  all arrived (and that no further trial can join); the top floor(n/eta), at least one, continue.
- ``PromotionRule`` / ``StoppingRule``: ASHA's two variants as small rule objects over the book
  (what a rung arrival decides, which waiting trial a freed worker promotes).
- ``stop``, ``withdraw`` (error, early end, removal), ``revive`` (re-queued after a failure).
- ``to_data`` / ``from_data``: plain JSON-able data with a version; ``from_data`` refuses another
  version or a malformed shape with a ValueError.

Every operation is O(log n) in the size of a rung (``RankedValues``), except ``complete_rungs``,
which sorts a rung once, when it closes, and ``waiting_trials``, asked once at the end of a run.

Example::

    >>> book = RungBook(reduction_factor=3)
    >>> b = book.open_bracket([1.0, 3.0, 9.0])
    >>> for trial_id, score in [("a", 0.5), ("b", 0.9), ("c", 0.1)]:
    ...     entry = book.join(trial_id, b)
    ...     ahead = book.record(trial_id, 0, score, wait=True)
    >>> book.promotable(b), ahead
    ('b', 2)
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from typing import Optional

from tune_ext.schedulers.brackets import continues_at_arrival, promotable_count, survivors
from tune_ext.schedulers.ranking import RankedValues

BOOK_VERSION = 1
INF = math.inf


def encode_score(x: float):
    """A score as JSON-able data: non-finite values as strings."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def decode_score(x) -> float:
    value = float(x)
    if value != value:
        raise ValueError("a score is NaN (scores map NaN to -inf before they are recorded)")
    return value


class TrialEntry:
    """Where one trial stands in its bracket (see the module docstring). ``flat`` holds its
    records, (score, arrival) in rung k at ``flat[2k]``, ``flat[2k + 1]``, for k = 0 .. ``rung``:
    one tuple of numbers, which the garbage collector stops tracking, rather than a container per
    trial (a million of them slow every collection). ``next_milestone`` is the time at which a
    result reaches a rung the trial has no record in yet (inf past the last rung), so that a
    result between rungs is told apart without a search."""
    __slots__ = ("bracket", "rung", "flat", "waiting", "alive", "stopped", "next_milestone",
                 "rungs")

    def __init__(self, bracket: int, records: Optional[list] = None, waiting: bool = False,
                 alive: bool = True, stopped: bool = False):
        self.bracket = bracket
        self.flat: tuple = tuple(x for record in records or () for x in record)
        self.rung = len(self.flat) // 2 - 1
        self.waiting = waiting
        self.alive = alive
        self.stopped = stopped
        self.next_milestone = INF
        self.rungs: list[Rung] = []   # its bracket's rungs (set by the book; not saved)

    @property
    def records(self) -> list[tuple[float, int]]:
        """(score, arrival) in each rung it reached, lowest first."""
        return list(zip(self.flat[::2], self.flat[1::2]))


class Rung:
    """One rung: its records' ranking keys (a ``RankedValues``), the trials waiting in it, best
    first (a heap; entries that no longer wait are skipped lazily), and how many live trials wait
    in it or head to it."""
    __slots__ = ("milestone", "ranked", "heap", "num_waiting", "num_heading")

    def __init__(self, milestone: float):
        self.milestone = milestone
        self.ranked = RankedValues()
        self.heap: list[tuple[float, int, str]] = []
        self.num_waiting = 0
        self.num_heading = 0

    def __len__(self) -> int:
        return len(self.ranked)


class Bracket:
    """Rungs with rising milestones and the trials that joined, in order; ``capacity`` trials at
    most (None: no limit). ``closed``: no trial will join any more; ``done[k]``: rung k has
    completed (synchronous halving only)."""
    __slots__ = ("milestones", "rungs", "capacity", "trial_ids", "closed", "done")

    def __init__(self, milestones: list[float], capacity: Optional[int] = None):
        self.milestones = [float(m) for m in milestones]
        self.rungs = [Rung(m) for m in self.milestones]
        self.capacity = capacity
        self.trial_ids: list[str] = []
        self.closed = False
        self.done = [False] * len(self.rungs)

    @property
    def members(self) -> int:
        return len(self.trial_ids)


class RungBook:
    """The record of every rung of every bracket, and where each trial stands (module docstring).

    Args:
        reduction_factor: eta: the top 1/eta of a rung continue.
        ties_by_arrival: rank equal scores by arrival (True), or keep bare scores (False: the
            rank counts strictly better results only, all a "stopping" decision needs).
    """

    def __init__(self, reduction_factor, ties_by_arrival: bool = True):
        self.eta = reduction_factor
        self.ties_by_arrival = ties_by_arrival
        self.brackets: list[Bracket] = []
        self.trials: dict[str, TrialEntry] = {}
        self.seq = 0    # arrivals so far: the tie-break and the heap order

    def _key(self, score: float, seq: int):
        return (score, -seq) if self.ties_by_arrival else score

    # ---- where a trial stands: a live trial waits in a rung or heads to the next one ----
    def _place(self, entry: TrialEntry, delta: int) -> None:
        if entry.alive:
            rungs = entry.rungs
            if entry.waiting:
                rungs[entry.rung].num_waiting += delta
            elif entry.rung + 1 < len(rungs):
                rungs[entry.rung + 1].num_heading += delta

    def _set_next_milestone(self, entry: TrialEntry) -> None:
        rungs = entry.rungs
        nxt = entry.rung + 1
        entry.next_milestone = rungs[nxt].milestone if nxt < len(rungs) else INF

    # ---- brackets and members ----
    def open_bracket(self, milestones: list[float], capacity: Optional[int] = None) -> int:
        self.brackets.append(Bracket(milestones, capacity))
        return len(self.brackets) - 1

    def accepting(self, bracket: int) -> bool:
        b = self.brackets[bracket]
        return not b.closed and (b.capacity is None or b.members < b.capacity)

    def close(self, bracket: int) -> bool:
        """No further trial joins ``bracket``; True if it was open."""
        b = self.brackets[bracket]
        was_open, b.closed = not b.closed, True
        return was_open

    def join(self, trial_id: str, bracket: int) -> TrialEntry:
        b = self.brackets[bracket]
        entry = self.trials[trial_id] = TrialEntry(bracket)
        entry.rungs = b.rungs
        b.trial_ids.append(trial_id)
        if b.capacity is not None and b.members >= b.capacity:
            b.closed = True
        self._set_next_milestone(entry)
        self._place(entry, 1)
        return entry

    def milestones(self, trial_id: str) -> list[float]:
        return self.brackets[self.trials[trial_id].bracket].milestones

    # ---- results ----
    def reached(self, trial_id: str, t: float) -> int:
        """The highest rung above the trial's last record that ``t`` reaches, or -1."""
        entry = self.trials[trial_id]
        if t < entry.next_milestone:
            return -1
        return bisect_right(self.brackets[entry.bracket].milestones, t) - 1

    def record(self, trial_id: str, rung: int, score: float, wait: bool = False) -> int:
        """Record ``score`` in every rung above the trial's last record up to ``rung`` (results
        may overstep rungs); the trial then waits there (``wait``) or heads to the next rung.
        Returns how many earlier records of ``rung`` rank ahead of it."""
        return self._record(self.trials[trial_id], trial_id, rung, score, wait)

    def _record(self, entry: TrialEntry, trial_id: str, rung: int, score: float,
                wait: bool) -> int:
        if rung <= entry.rung:
            raise ValueError(f"{trial_id} already has a record in rung {entry.rung}")
        # ``_place`` and ``_set_next_milestone`` inlined: this is the path of every decision
        rungs, alive = entry.rungs, entry.alive
        if alive:
            if entry.waiting:
                rungs[entry.rung].num_waiting -= 1
            else:
                rungs[entry.rung + 1].num_heading -= 1
        self.seq = seq = self.seq + 1
        key = (score, -seq) if self.ties_by_arrival else score
        r = rungs[rung]
        if rung == entry.rung + 1:
            entry.flat += (score, seq)
        else:                                     # rungs overstepped on the way
            for k in range(entry.rung + 1, rung):
                rungs[k].ranked.insert(key)
            entry.flat += (score, seq) * (rung - entry.rung)
        ahead = r.ranked.insert(key)
        if score == -INF:     # behind every other record, other -inf ones included
            ahead = len(r.ranked) - 1
        entry.rung, entry.waiting = rung, wait
        if rung + 1 < len(rungs):
            entry.next_milestone = rungs[rung + 1].milestone
            if alive and not wait:
                rungs[rung + 1].num_heading += 1
        else:
            entry.next_milestone = INF
        if wait:
            heapq.heappush(r.heap, (-score, seq, trial_id))
            if alive:
                r.num_waiting += 1
        return ahead

    def size(self, bracket: int, rung: int) -> int:
        """How many results rung ``rung`` of ``bracket`` has recorded."""
        return len(self.brackets[bracket].rungs[rung].ranked)

    def continues(self, trial_id: str, t: float, score: float) -> bool:
        """ASHA "stopping": record a result at time ``t`` (which reaches a rung the trial has no
        record in) in every rung it reaches, and answer "continue?": iff it ranks in the top 1/eta
        of the highest of them at its arrival, below the last rung. A trial that does not
        continue is stopped."""
        entry = self.trials[trial_id]
        rung = bisect_right(self.brackets[entry.bracket].milestones, t) - 1
        ahead = self._record(entry, trial_id, rung, score, False)
        rungs = entry.rungs
        if rung + 1 < len(rungs) and continues_at_arrival(ahead, len(rungs[rung].ranked), self.eta):
            return True
        # self.stop(trial_id), inlined: the trial was heading to the next rung
        if entry.alive and rung + 1 < len(rungs):
            rungs[rung + 1].num_heading -= 1
        entry.alive, entry.stopped = False, True
        return False

    def wait(self, trial_id: str) -> None:
        """The trial waits in the rung of its last record (a rebuilt book: paused there)."""
        entry = self.trials[trial_id]
        self._place(entry, -1)
        entry.waiting = True
        score, seq = entry.flat[-2:]
        heapq.heappush(entry.rungs[entry.rung].heap, (-score, seq, trial_id))
        self._place(entry, 1)

    # ---- ASHA: promotion ----
    def promotable(self, bracket: int) -> Optional[str]:
        """The best waiting trial in the top floor(n / eta) of the highest rung (below the last)
        that has one, or None."""
        rungs = self.brackets[bracket].rungs
        for k in range(len(rungs) - 2, -1, -1):
            rung = rungs[k]
            heap = rung.heap
            while heap:
                neg, seq, tid = heap[0]
                entry = self.trials.get(tid)
                if entry is not None and entry.alive and entry.waiting and entry.rung == k \
                        and entry.flat[2 * k + 1] == seq:
                    break
                heapq.heappop(heap)   # promoted, withdrawn or re-recorded since it was pushed
            if heap and rung.ranked.count_above(self._key(-heap[0][0], heap[0][1])) < \
                    promotable_count(len(rung.ranked), self.eta):
                return heap[0][2]
        return None

    def promote(self, trial_id: str) -> None:
        """The trial stops waiting and heads to the next rung."""
        entry = self.trials[trial_id]
        self._place(entry, -1)
        entry.waiting = False
        self._place(entry, 1)

    def waiting_trials(self) -> list[str]:
        """Live trials waiting in a rung, in the order they joined."""
        return [tid for tid, e in self.trials.items() if e.alive and e.waiting]

    # ---- SHA: rung completion ----
    def position(self, trial_id: str) -> int:
        """The rung the trial waits in or heads to."""
        entry = self.trials[trial_id]
        return entry.rung if entry.waiting else entry.rung + 1

    def rung_done(self, bracket: int, rung: int) -> bool:
        done = self.brackets[bracket].done
        return rung < len(done) and done[rung]

    def is_complete(self, bracket: int, rung: int) -> bool:
        """No further result can enter rung ``rung``: no trial can join the bracket (rung 0) or
        the rung below has completed, and no live trial is still heading to it."""
        b = self.brackets[bracket]
        gate = b.closed if rung == 0 else b.done[rung - 1]
        return gate and b.rungs[rung].num_heading == 0

    def completed(self, bracket: int) -> list[bool]:
        """For the report: which rungs of ``bracket`` are complete, closed by ``complete_rungs``
        or not yet (a rung whose trials all errored or left is complete as soon as they have,
        though the scheduler closes it only at its next decision, which may never come)."""
        b = self.brackets[bracket]
        out, gate = [], b.closed
        for k, rung in enumerate(b.rungs):
            gate = b.done[k] or (gate and rung.num_heading == 0)
            out.append(gate)
        return out

    def complete_rungs(self, bracket: int) -> list[tuple[list[str], list[str]]]:
        """Close every rung that is complete, lowest first: of its live records, best first, the
        top floor(n / eta) (at least one; n counts every record) continue and the rest stop; at
        the last rung everyone stops. Returns (continuing, stopped) trial ids per closed rung;
        a trial already recorded higher up (a rebuilt book) keeps waiting there."""
        b, out = self.brackets[bracket], []
        for k, rung in enumerate(b.rungs):
            if b.done[k]:
                continue
            if not self.is_complete(bracket, k):
                break
            b.done[k] = True
            here = [tid for tid in b.trial_ids
                    if self.trials[tid].rung >= k and self.trials[tid].alive]
            # best first; equal scores by arrival
            ranked = sorted(here, key=lambda tid: (-self.trials[tid].flat[2 * k],
                                                   self.trials[tid].flat[2 * k + 1]))
            keep = 0 if k == len(b.rungs) - 1 else survivors(len(rung.ranked), self.eta)
            winners = [tid for tid in ranked[:keep] if self.trials[tid].rung == k]
            for tid in winners:
                self.promote(tid)
            for tid in ranked[keep:]:
                self.stop(tid)
            out.append((winners, ranked[keep:]))
        return out

    # ---- trials that leave, and come back ----
    def _forget_waiting(self, entry: TrialEntry) -> None:
        """Take back the record of the rung the trial waits in (it will arrive there again)."""
        if entry.waiting:
            score, seq = entry.flat[-2:]
            entry.flat = entry.flat[:-2]
            entry.rungs[entry.rung].ranked.remove(self._key(score, seq))
            entry.rung -= 1
            entry.waiting = False
            self._set_next_milestone(entry)

    def stop(self, trial_id: str) -> None:
        """The scheduler ended the trial for good; its records stay (real measurements)."""
        entry = self.trials[trial_id]
        self._place(entry, -1)
        entry.alive, entry.waiting, entry.stopped = False, False, True

    def withdraw(self, trial_id: str, forget: bool, stopped: bool) -> None:
        """The trial left (an error, an early end, a removal). ``forget``: its record in the rung
        it waits in leaves with it; else the record stays and still counts in the rung's size.
        ``stopped``: it ended for good (not an error it may come back from)."""
        entry = self.trials.get(trial_id)
        if entry is None:
            return
        self._place(entry, -1)
        if forget:
            self._forget_waiting(entry)
        entry.alive = False
        entry.stopped = entry.stopped or stopped

    def revive(self, trial_id: str, forget: bool = False) -> None:
        """A withdrawn trial is back (re-queued after a failure); ``forget``: it arrives again at
        the rung it was waiting in."""
        entry = self.trials[trial_id]
        if entry.alive:
            return
        if forget:
            self._forget_waiting(entry)
        entry.alive = True
        self._place(entry, 1)

    # ---- plain data ----
    def to_data(self) -> dict:
        """The book as JSON-able plain data with a version (ranks, heaps and counts are derived
        from it on load)."""
        return {"version": BOOK_VERSION, "reduction_factor": self.eta,
                "ties_by_arrival": self.ties_by_arrival, "seq": self.seq,
                "brackets": [{"milestones": list(b.milestones), "capacity": b.capacity,
                              "closed": b.closed, "done": list(b.done)} for b in self.brackets],
                "trials": {tid: {"bracket": e.bracket, "waiting": e.waiting, "alive": e.alive,
                                 "stopped": e.stopped,
                                 "records": [[encode_score(score), seq]
                                             for score, seq in e.records]}
                           for tid, e in self.trials.items()}}

    @classmethod
    def from_data(cls, data) -> "RungBook":
        """A book from ``to_data``'s output; ValueError naming what is wrong for another version
        or a malformed shape."""
        if not isinstance(data, dict) or "version" not in data:
            raise ValueError(f"rung book: expected a dict with a version, got "
                             f"{type(data).__name__}")
        if data["version"] != BOOK_VERSION:
            raise ValueError(f"rung book: version {data['version']!r}, this tune-ext reads "
                             f"version {BOOK_VERSION}")
        try:
            return cls._load(data)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"rung book: malformed data ({type(e).__name__}: {e})") from None

    @classmethod
    def _load(cls, data: dict) -> "RungBook":
        def expect(ok, what):
            if not ok:
                raise ValueError(what)

        expect(isinstance(data["ties_by_arrival"], bool), "ties_by_arrival is not a bool")
        book = cls(data["reduction_factor"], data["ties_by_arrival"])
        book.seq = data["seq"]
        expect(isinstance(book.seq, int) and book.seq >= 0, f"seq {book.seq!r}")
        for bd in data["brackets"]:
            bracket = Bracket(bd["milestones"], bd["capacity"])
            bracket.closed, bracket.done = bd["closed"], list(bd["done"])
            expect(isinstance(bracket.closed, bool) and len(bracket.done) == len(bracket.rungs)
                   and all(isinstance(d, bool) for d in bracket.done),
                   "a bracket's closed/done do not match its milestones")
            book.brackets.append(bracket)
        for tid, td in data["trials"].items():
            flags = (td["waiting"], td["alive"], td["stopped"])
            expect(all(isinstance(x, bool) for x in flags), f"trial {tid}: flags are not bools")
            b = td["bracket"]
            expect(isinstance(b, int) and 0 <= b < len(book.brackets), f"trial {tid}: no "
                                                                      f"bracket {b!r}")
            bracket = book.brackets[b]
            records = [(decode_score(score), seq) for score, seq in td["records"]]
            expect(len(records) <= len(bracket.rungs), f"trial {tid}: more records than rungs")
            expect(all(isinstance(seq, int) and 0 < seq <= book.seq for _, seq in records),
                   f"trial {tid}: an arrival is out of range")
            expect(records or not td["waiting"], f"trial {tid} waits in no rung")
            entry = book.trials[tid] = TrialEntry(b, records, *flags)
            entry.rungs = bracket.rungs
            bracket.trial_ids.append(tid)
            for rung, (score, seq) in zip(bracket.rungs, records):
                rung.ranked.insert(book._key(score, seq))
            if entry.alive and entry.waiting:
                bracket.rungs[entry.rung].heap.append((-records[-1][0], records[-1][1], tid))
            book._set_next_milestone(entry)
            book._place(entry, 1)
        for bracket in book.brackets:
            for rung in bracket.rungs:
                heapq.heapify(rung.heap)
        return book


# ---- ASHA's two rules over the book (Li et al. 2020): when a rung arrival continues ----
# Ray's TrialScheduler decisions, the same strings (this module imports no Ray)
CONTINUE, PAUSE, STOP = "CONTINUE", "PAUSE", "STOP"


class AshaRule:
    """What an ASHA variant decides over the book; counts its decisions (``stopped``,
    ``paused``, ``promoted``) for the scheduler's report and saved state."""
    name = ""
    pauses = False             # whether a trial waits in its rung until promoted
    ties_by_arrival = True     # the book's ranking (RungBook's argument)

    def __init__(self):
        self.stopped = self.paused = self.promoted = 0

    def arrive(self, book: RungBook, trial_id: str, t: float, score: float) -> str:
        """A result at time ``t`` reaches a rung the trial has no record in: record it and
        return CONTINUE, PAUSE or STOP."""
        raise NotImplementedError

    def next_promotion(self, book: RungBook, bracket: int) -> Optional[str]:
        """The waiting trial of ``bracket`` that a freed worker should resume, or None."""
        raise NotImplementedError

    def replayed(self, book: RungBook, trial_id: str) -> None:
        """A rebuilt trial (restore without saved state) whose last result was a rung arrival
        that did not stop it."""
        raise NotImplementedError

    def stop(self, book: RungBook, trial_id: str) -> None:
        book.stop(trial_id)
        self.stopped += 1

    def promote(self, book: RungBook, trial_id: str) -> None:
        book.promote(trial_id)
        self.promoted += 1


class PromotionRule(AshaRule):
    """ASHA "promotion" (Li et al. 2020, Algorithm 2): a trial arriving at a rung waits there
    unless it is itself the next promotion (the best waiting trial in the top floor(n/eta) of the
    highest rung that has one); a freed worker promotes that trial (``next_promotion``)."""
    name = "promotion"
    pauses = True
    ties_by_arrival = True     # the promotion order needs a total order

    def arrive(self, book: RungBook, trial_id: str, t: float, score: float) -> str:
        top = book.reached(trial_id, t)
        entry = book.trials[trial_id]
        last = top == len(entry.rungs) - 1
        book.record(trial_id, top, score, wait=not last)
        if last:
            self.stop(book, trial_id)
            return STOP
        # The worker is free: get_job() may hand it straight back to this trial.
        if book.promotable(entry.bracket) == trial_id:
            self.promote(book, trial_id)
            return CONTINUE
        self.paused += 1
        return PAUSE

    def next_promotion(self, book: RungBook, bracket: int) -> Optional[str]:
        return book.promotable(bracket)

    def replayed(self, book: RungBook, trial_id: str) -> None:
        """A rebuilt trial whose last result was a rung arrival: it waits there (get_job then
        decides again, as it would have)."""
        book.wait(trial_id)


class StoppingRule(AshaRule):
    """ASHA "stopping" (Ray's approximation of Algorithm 2): a trial continues iff its result is
    in the top 1/eta of the rung at the moment it arrives (``book.continues``), else it stops;
    nothing ever waits, so nothing is promoted."""
    name = "stopping"
    pauses = False
    ties_by_arrival = False    # the decision counts strictly better results only

    def arrive(self, book: RungBook, trial_id: str, t: float, score: float) -> str:
        if book.continues(trial_id, t, score):
            return CONTINUE
        self.stopped += 1
        return STOP

    def next_promotion(self, book: RungBook, bracket: int) -> Optional[str]:
        return None

    def replayed(self, book: RungBook, trial_id: str) -> None:
        """A rebuilt trial heads on to its next rung (it was not stopped at arrival)."""


RULES = {"promotion": PromotionRule, "stopping": StoppingRule}
