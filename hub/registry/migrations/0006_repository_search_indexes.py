"""Indexes for repository search on PostgreSQL (a no-op on SQLite).

``selectors.repositories_search`` filters with

    (setweight(to_tsvector('english', COALESCE(name, '')), 'A')
     || setweight(to_tsvector('english', COALESCE(description, '')), 'B'))
        @@ websearch_to_tsquery('english', q)
    OR UPPER(name::text) LIKE UPPER('%q%')

Two GIN indexes serve it, one per side of the OR, so the planner can answer with a
BitmapOr of two index scans instead of computing a tsvector for every row:

* ``registry_repository_search_gin``: on exactly that tsvector expression. The text
  search configuration is spelled out ('english') because an index expression must be
  immutable; the query names the same configuration.
* ``registry_repository_name_trgm``: pg_trgm on ``UPPER(name)``, for the ``icontains``
  side (Django compiles it to ``UPPER(name::text) LIKE UPPER(%s)``).

A third, plain index on the default order (``-updated_at, -id``, in the model's
``Meta.indexes``, on both databases) serves queries that match most rows: the planner
walks it and stops after a page instead of sorting every match.

The tsvector index is built from Django's own expression, so its SQL is the query's
(the trigram one is plain SQL: ``OpClass`` needs ``django.contrib.postgres`` installed
as an app, which the hub does not need otherwise). The GIN indexes are not in the
model's ``Meta.indexes`` on purpose: SQLite (the embedded default) has neither GIN nor
pg_trgm, and a model-state GIN index would be recreated there whenever a later
migration rebuilds the table.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import TrigramExtension
from django.contrib.postgres.search import SearchVector
from django.db import migrations, models

SEARCH_INDEX = "registry_repository_search_gin"
TRIGRAM_INDEX = "registry_repository_name_trgm"


def search_index():
    vector = SearchVector("name", weight="A", config="english") + SearchVector(
        "description", weight="B", config="english"
    )
    return GinIndex(vector, name=SEARCH_INDEX)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    Repository = apps.get_model("registry", "Repository")
    schema_editor.add_index(Repository, search_index())
    schema_editor.execute(
        f'CREATE INDEX "{TRIGRAM_INDEX}" ON "registry_repository" '
        'USING gin ((UPPER("name"::text)) gin_trgm_ops)'
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    Repository = apps.get_model("registry", "Repository")
    schema_editor.execute(f'DROP INDEX IF EXISTS "{TRIGRAM_INDEX}"')
    schema_editor.remove_index(Repository, search_index())


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0005_job_request_id"),
    ]

    operations = [
        # CreateExtension does nothing on other databases.
        TrigramExtension(),
        migrations.RunPython(create, drop, elidable=False),
        # Both databases: the default order, for searches that match most rows.
        migrations.AddIndex(
            model_name="repository",
            index=models.Index(fields=["-updated_at", "-id"], name="repository_recent"),
        ),
    ]
