"""Generated people: resident IDs the core accepts, checked with the core's own check character."""

from __future__ import annotations

import numpy as np

from pipeline.idcard import check_character, is_valid_resident_id
from tracegen.people import check_index, make_people
from tracegen.tables import Ints


def test_check_index_is_the_cores_check_character() -> None:
    first17: Ints = np.random.default_rng(3).integers(10**16, 10**17, 2_000)
    got = check_index(first17).tolist()
    assert ["10X98765432"[k] for k in got] == [check_character(str(v)) for v in first17.tolist()]


def test_people_have_valid_ids_born_in_range() -> None:
    people = make_people(np.random.default_rng(5), 3_000, "1960-01-01", "2005-12-31")
    ids = people.id_number.tolist()
    assert all(is_valid_resident_id(i, "20051231") for i in ids)
    assert min(i[6:14] for i in ids) >= "19600101"
    assert len(people.name) == len(people.phone) == len(people.address) == 3_000
