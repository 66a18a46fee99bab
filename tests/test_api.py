import pytest

import advisor


@pytest.mark.parametrize("name", advisor.__all__)
def test_public_names_resolve(name):
    assert getattr(advisor, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute"):
        advisor.not_a_thing  # noqa: B018
