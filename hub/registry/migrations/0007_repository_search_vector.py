"""A stored search vector for repositories on PostgreSQL (a no-op on SQLite).

Migration 0006 indexed the search's tsvector *expression*. Selective queries use that
index, but a query matching about 1 % of rows is answered by walking the listing order
(``repository_recent``) and testing each row passed, and the test had to compute the
row's tsvector anew: ~2,100 ``to_tsvector`` calls, 30-60 ms over 100,000 repositories.
A generated column stores the vector, so the walk only reads it.

``search_vector`` is not a model field: SQLite (the embedded default) has no tsvector,
and PostgreSQL fills the column itself on every insert and update. Only
``selectors.repositories_search`` reads it, on PostgreSQL.
"""

from django.db import migrations

OLD_INDEX = "registry_repository_search_gin"
INDEX = "registry_repository_search_vector"
#: The expression of migration 0006's index, unchanged: same configuration and weights.
VECTOR = (
    "setweight(to_tsvector('english'::regconfig, COALESCE(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, COALESCE(description, '')), 'B')"
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE registry_repository ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({VECTOR}) STORED"
    )
    schema_editor.execute(
        f'CREATE INDEX "{INDEX}" ON registry_repository USING gin (search_vector)'
    )
    schema_editor.execute(f'DROP INDEX IF EXISTS "{OLD_INDEX}"')


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'CREATE INDEX "{OLD_INDEX}" ON registry_repository USING gin (({VECTOR}))')
    schema_editor.execute("ALTER TABLE registry_repository DROP COLUMN search_vector")


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0006_repository_search_indexes"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
