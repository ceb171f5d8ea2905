"""``registry.collect``: a family's members are its modules and its subpackages' modules."""

from __future__ import annotations

import sys

from blendin_local.registry import collect


def test_collect_finds_members_in_modules_and_in_a_subpackage(tmp_path, monkeypatch):
    family = tmp_path / "family_pkg"
    (family / "folder").mkdir(parents=True)
    (family / "__init__.py").write_text("")
    (family / "flat.py").write_text("MEMBER = 'flat'\n")
    (family / "helper.py").write_text("OTHER = 1\n")
    (family / "folder" / "__init__.py").write_text("")
    (family / "folder" / "member.py").write_text("MEMBER = 'in a folder'\n")
    (family / "folder" / "helper.py").write_text("MEMBER = 3  # not a str: not a member\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    assert sorted(collect("family_pkg", [str(family)], "MEMBER", str)) == ["flat", "in a folder"]


def test_a_subpackage_declaring_the_member_itself_is_not_searched_further(tmp_path, monkeypatch):
    family = tmp_path / "family_pkg2"
    (family / "folder").mkdir(parents=True)
    (family / "__init__.py").write_text("")
    (family / "folder" / "__init__.py").write_text("MEMBER = 'the folder'\n")
    (family / "folder" / "inner.py").write_text("MEMBER = 'inner'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    assert collect("family_pkg2", [str(family)], "MEMBER", str) == ["the folder"]
