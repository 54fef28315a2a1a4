"""The soak's random world: limiters shaped like a Nemesis pipeline's, and the load on them."""

from __future__ import annotations

import random
from typing import Any

from soak_model import ClassModel, LimiterModel, ModelBucket

from admission import AdaptiveLimiter, WorkloadClass
from admission.testing import VirtualClock

#: (limiter, its classes); no classes: the default class only (``async with``'s fast path).
SPECS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("files-new_file", ("standard", "expensive")),
    ("files-document_conversion_input", ("standard", "expensive", "bulk")),
    ("titus-titus_input", ("standard", "expensive")),
    ("plain", ()),
)


def build_limiters(
    rng: random.Random, clock: VirtualClock, context: str
) -> list[tuple[AdaptiveLimiter, LimiterModel, Workload]]:
    """Each limiter with random limits, and the model that starts where it starts."""
    now = clock.monotonic()
    built = []
    for name, names in SPECS:
        rate = round(rng.uniform(5, 60), 3)
        burst = max(1.0, round(rng.choice([1, 2, 4, 10, 25]) * rng.uniform(1, 1.5), 3))
        cap = None if rng.random() < 0.25 else rng.randint(2, 10)
        initial = None if rng.random() < 0.5 else round(rng.uniform(0, burst), 3)
        specs: list[WorkloadClass] = []
        models: list[ClassModel] = []
        floors = 0
        floor_list: list[int] = []
        for cname in names:
            share = rng.choice([0.5, 1.0, 2.0, 3.0])
            ccap = None if rng.random() < 0.5 else rng.randint(1, 4)
            floor = rng.choice([0, 0, 1, 2])
            if ccap is not None:
                floor = min(floor, ccap)
            if cap is not None:
                floor = min(floor, cap - floors)
            floors += floor
            floor_list.append(floor)
            crate = cburst = None
            bucket = None
            if rng.random() < 0.4:
                crate = round(rate * rng.uniform(0.2, 0.8), 3)
                cburst = None if rng.random() < 0.3 else round(rng.uniform(1, burst), 3)
                # WorkloadClass: burst defaults to max(1, rate).
                bucket = ModelBucket(crate, cburst if cburst is not None else max(1.0, crate), now)
            specs.append(WorkloadClass(cname, share, floor, ccap, crate, cburst))
            models.append(ClassModel(cname, share=share, floor=floor, cap=ccap, bucket=bucket))
        if cap is not None and cap < least_cap(floor_list):
            cap = least_cap(floor_list)
        lib = AdaptiveLimiter(
            name,
            rate=rate,
            burst=burst,
            max_concurrency=cap,
            initial_tokens=initial,
            classes=specs or None,
            clock=clock,
        )
        models = models or [ClassModel("default")]
        model = LimiterModel(
            name, rate=rate, burst=burst, cap=cap, classes=models, at=now, context=context
        )
        if initial is not None:
            model.bucket.tokens = initial
        work = Workload(rng, rate, burst, cap, [c.name for c in models], plain=not names)
        built.append((lib, model, work))
    return built


def least_cap(floors: list[int]) -> int:
    """The smallest limiter cap these floors allow: one more if a class has no floor."""
    return max(1, sum(floors) + (0 in floors))


class Workload:
    """The load on one limiter: phases from idle to four times its rate, and the request mix."""

    def __init__(
        self,
        rng: random.Random,
        rate: float,
        burst: float,
        cap: int | None,
        names: list[str],
        *,
        plain: bool,
    ) -> None:
        self.base_rate = rate
        self.base_burst = burst
        self.base_cap = cap
        self.names = names
        self.weights = [rng.uniform(0.2, 1.0) for _ in names]
        self.modes = ("with", "acquire", "admit", "try")
        self.mode_weights = (0.3, 0.4, 0.15, 0.15) if plain else (0.05, 0.55, 0.25, 0.15)
        self._rate = 0.0
        self._per_second = rate
        self.phase_end = 0.0
        self.mean_hold = 0.1

    def maybe_new_phase(self, rng: random.Random, now: float, model: LimiterModel) -> None:
        if now < self.phase_end:
            return
        load = rng.choice([0.0, 0.3, 0.7, 1.0, 1.0, 1.3, 2.0, 4.0])
        rate = model.bucket.rate
        # Admissions per second the rate allows with this request mix's mean cost.
        per_second = rate / (0.8 + 0.1 * model.bucket.burst)
        if load == 0.0:
            # Idle long enough for the bucket to fill: the next burst tests the burst.
            duration = rng.uniform(1, 3) * model.bucket.burst / rate
        else:
            duration = rng.expovariate(load * per_second / 150)
        self.phase_end = now + duration
        self._rate = load * per_second
        self._per_second = per_second
        self.mean_hold = rng.choice([0.2, 1.0, 3.0]) * (model.cap or 5) / per_second

    def arrival_rate(self) -> float:
        return self._rate

    def phase_left(self, now: float) -> float:
        return max(0.0, self.phase_end - now)

    def mode(self, rng: random.Random) -> str:
        return rng.choices(self.modes, self.mode_weights)[0]

    def workload_class(self, rng: random.Random) -> str:
        return rng.choices(self.names, self.weights)[0]

    def cost(self, rng: random.Random, model: LimiterModel, name: str) -> float:
        """Mostly 1, some fractions, some up to the burst, and one in a hundred above it."""
        burst = model.burst_for(model.classes[name])
        roll = rng.random()
        if roll < 0.55:
            return 1.0
        if roll < 0.80:
            return round(rng.uniform(0.05, 1.0), 3)
        if roll < 0.97:
            return min(burst, round(rng.uniform(1.0, burst), 3))
        if roll < 0.99:
            return burst
        return round(burst * rng.uniform(1.001, 1.5), 3) + 0.001

    def timeout(self, rng: random.Random) -> float | None:
        roll = rng.random()
        if roll < 0.8:
            return None
        if roll < 0.82:
            return 0.0
        return rng.expovariate(self._per_second / rng.choice([1, 5, 20]))

    def cancel_delay(self, rng: random.Random) -> float:
        return rng.expovariate(self._per_second / rng.choice([0.5, 5, 20]))


def random_retune(
    rng: random.Random, model: LimiterModel, work: Workload
) -> tuple[str | None, dict[str, Any], str | None]:
    """(class or None for the limiter, the changes, the field a refused retune must name)."""
    classes = list(model.classes.values())
    if rng.random() < 0.12:
        return _bad_retune(rng, model)
    changes: dict[str, Any] = {}
    if rng.random() < 0.5:
        if rng.random() < 0.6:
            factor = rng.choice([0.25, 0.5, 1.0, 2.0, 3.0]) * rng.uniform(0.8, 1.2)
            changes["rate"] = round(work.base_rate * factor, 3)
        if rng.random() < 0.5:
            changes["burst"] = round(max(1.0, work.base_burst * rng.uniform(0.2, 2.0)), 3)
        if rng.random() < 0.3 and (under := _under_a_waiter(rng, classes)) is not None:
            changes["burst"] = under
        if rng.random() < 0.4 and (model.cap is not None or rng.random() < 0.3):
            least = least_cap([c.floor for c in classes])
            changes["max_concurrency"] = rng.randint(least, max(least, (work.base_cap or 6) + 4))
        return None, changes, None
    cls = rng.choice(classes)
    if rng.random() < 0.3:
        changes["share"] = rng.choice([0.5, 1.0, 2.0, 3.0])
    cap = cls.cap
    if rng.random() < 0.3:
        cap = changes["max_concurrency"] = rng.randint(1, 5)
    if rng.random() < 0.3:
        floor = rng.choice([0, 1, 2])
        if cap is not None:
            floor = min(floor, cap)
        others = [c.floor for c in classes if c is not cls]
        while model.cap is not None and least_cap([*others, floor]) > model.cap:
            floor -= 1  # 0 always fits: the floors in force do
        changes["minimum_floor"] = floor
    elif cap is not None and cls.floor > cap:
        changes["minimum_floor"] = cap
    if rng.random() < 0.4:
        changes["rate"] = round(work.base_rate * rng.uniform(0.1, 0.9), 3)
    if rng.random() < 0.3 and (cls.bucket is not None or "rate" in changes):
        changes["burst"] = round(rng.uniform(1.0, work.base_burst * 1.5), 3)
        if rng.random() < 0.5 and (under := _under_a_waiter(rng, [cls])) is not None:
            changes["burst"] = under
    return cls.name, changes, None


def _under_a_waiter(rng: random.Random, classes: list[ClassModel]) -> float | None:
    """A burst just below the largest cost queued: that waiter must fail, not wait forever."""
    costs = [r.cost for c in classes for r in c.queue.values()]
    if not costs or max(costs) <= 1.0:
        return None
    return max(1.0, round(rng.uniform(max(1.0, max(costs) * 0.6), max(costs)), 3) - 0.001)


def _bad_retune(
    rng: random.Random, model: LimiterModel
) -> tuple[str | None, dict[str, Any], str | None]:
    """A retune the limiter must refuse, changing nothing; the field its error must name."""
    classes = list(model.classes.values())
    cls = rng.choice(classes)
    floors = sum(c.floor for c in classes)
    choices: list[tuple[str | None, dict[str, Any], str]] = [
        (None, {"rate": -1.0, "burst": 2.0}, "rate"),
        (None, {"burst": 0.5}, "burst"),
        (cls.name, {"share": 0.0}, "share"),
        (cls.name, {"max_concurrency": 1, "minimum_floor": 2}, "minimum_floor"),
    ]
    if model.cap is not None and floors >= 2:
        choices.append((None, {"max_concurrency": floors - 1, "rate": 3.0}, "minimum_floor"))
    if model.cap is not None and floors >= 1 and any(c.floor == 0 for c in classes):
        # Floors filling the cap would starve the class without one.
        choices.append((None, {"max_concurrency": floors}, "minimum_floor"))
    if cls.bucket is None:
        choices.append((cls.name, {"burst": 3.0}, "needs a rate"))
    if model.cap is not None and cls.cap is None:
        over = model.cap - (floors - cls.floor) + 1
        choices.append((cls.name, {"minimum_floor": over}, "minimum_floor"))
    return rng.choice(choices)
