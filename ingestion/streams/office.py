"""A doctor's office: one claim and one diagnosis every couple of seconds, sometimes sent twice.

The office system publishes `{"id", "patient_id", "code", "price"}` claims and `{"id",
"patient_id", "icd10_code"}` diagnoses as JSON, with no time of their own (a record's time is
when it reached Kafka), and may send the same object again. Its 1,000 patients come from a
seed and are published to `office.patients`, keyed by id.

The extension of `office.yml`, which declares the stream.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator

from ingestion.contracts import Contract

PATIENTS = 1_000
AMNESIA = "R41.3"
ASTHMA = "J44.9"  # the office's own label for its asthma patients

# Diagnoses the office makes, most often first; amnesia and asthma are the ones its owners watch.
ICD10_CODES = (
    "J06.9", "I10", "E11.9", AMNESIA, ASTHMA, "M54.5", "K21.9", "F32.9", "J20.9", "R51", "N39.0", "E78.5",
)  # fmt: skip
# Procedure codes billed, with their usual price range in dollars.
PROCEDURES = {"03230": (2, 8), "99213": (60, 110), "99214": (90, 160), "81002": (3, 12), "36415": (5, 15)}

CLAIMS_TOPIC, DIAGNOSES_TOPIC, PATIENTS_TOPIC = "office.claims", "office.diagnoses", "office.patients"

_FIRST = ("Ada", "Ben", "Chloe", "Dan", "Eva", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Max", "Nora", "Omar")
_LAST = ("Smith", "Jansen", "Garcia", "Kim", "Novak", "Okafor", "Rossi", "Silva", "Weber", "Young", "Zhang", "Haas")


def patients(seed: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """The office's patients as (id, JSON) messages."""
    rng = random.Random(f"patients/{seed}")
    for patient_id in range(PATIENTS):
        person = {
            "id": patient_id,
            "first_name": rng.choice(_FIRST),
            "last_name": rng.choice(_LAST),
            "birth_date": f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "gender": rng.choice("FM"),
        }
        yield str(patient_id).encode(), json.dumps(person).encode()


def activity(
    count: int | None = None, duplicates: float = 0.05, seed: int = 0, first_id: int = 0
) -> Iterator[tuple[Contract, bytes, bytes]]:
    """One claim, then one diagnosis, `count` times (forever when None), with ids from `first_id`;
    after each object, with probability `duplicates`, an earlier one of its kind is sent again unchanged."""
    from ingestion.streams import contract as contract_of

    claims, diagnoses = contract_of(CLAIMS_TOPIC), contract_of(DIAGNOSES_TOPIC)
    rng = random.Random(seed)
    # Re-sends are of recent objects, so an endless stream keeps only the latest few thousand.
    sent: dict[str, deque[tuple[bytes, bytes]]] = {t: deque(maxlen=5_000) for t in (CLAIMS_TOPIC, DIAGNOSES_TOPIC)}
    weights = [1 / (rank + 1) for rank in range(len(ICD10_CODES))]
    pair = first_id
    while count is None or pair < first_id + count:
        code = rng.choice(list(PROCEDURES))
        low, high = PROCEDURES[code]
        claim = {"id": pair, "patient_id": rng.randrange(PATIENTS), "code": code, "price": rng.randint(low, high)}
        diagnosis = {
            "id": pair,
            "patient_id": rng.randrange(PATIENTS),
            "icd10_code": rng.choices(ICD10_CODES, weights=weights)[0],
        }
        for contract, record in ((claims, claim), (diagnoses, diagnosis)):
            message = (str(record["id"]).encode(), json.dumps(record).encode())
            sent[contract.topic].append(message)
            yield contract, *message
            if rng.random() < duplicates:
                earlier = sent[contract.topic]
                yield contract, *earlier[rng.randrange(len(earlier))]
        pair += 1


def __getattr__(name: str) -> Contract | tuple[Contract, ...]:
    # The contracts are declared in office.yml; these names read them from the registry.
    from ingestion.streams import contract, contracts_for

    topics = {"CLAIMS": CLAIMS_TOPIC, "DIAGNOSES": DIAGNOSES_TOPIC, "PATIENTS_CONTRACT": PATIENTS_TOPIC}
    if name in topics:
        return contract(topics[name])
    if name == "CONTRACTS":
        return contracts_for("office")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
