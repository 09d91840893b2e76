"""The exception tree: every error says what kind of refusal it is (its category)."""

from __future__ import annotations

import inspect

import singleton.errors
from singleton.errors import ErrorCategory, OrchestratorNotFound, SingletonError

ERRORS = [cls for _, cls in inspect.getmembers(singleton.errors, inspect.isclass)
          if issubclass(cls, SingletonError)]


def test_every_error_with_a_code_declares_its_own_category():
    coded = [cls for cls in ERRORS if "code" in vars(cls)]
    assert len(coded) >= 14
    assert [cls.__name__ for cls in coded if "category" not in vars(cls)] == []
    assert all(isinstance(cls.category, ErrorCategory) for cls in ERRORS)


def test_an_unknown_orchestrator_is_not_found_not_bad_input():
    assert OrchestratorNotFound("Nope").category is ErrorCategory.NOT_FOUND
