from tether.types import new_id


def test_ids_are_sortable_by_creation_and_unique() -> None:
    ids = [new_id("run") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 4 + 26 for i in ids)
