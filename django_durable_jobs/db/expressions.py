"""ORM expressions whose SQL differs by vendor (JSON building), for ``operations``.

They let the operations layer write one ``QuerySet.update()`` for every
database while the vendor SQL stays in ``db/``. Every value is a bound
parameter or a column reference.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Expression, F, Func, JSONField, TextField, Value
from django.db.models.functions import Cast


class JSONObject(Func):
    """A JSON object built in SQL from keys and expressions (``jsonb_build_object``)."""

    output_field = JSONField()

    def __init__(self, **fields: Any) -> None:
        expressions: list[Any] = []
        for key, value in fields.items():
            if value is None:
                value = Value(None, output_field=TextField())
            elif isinstance(value, str):
                value = Cast(Value(value), TextField())
            elif not hasattr(value, "resolve_expression"):
                value = Value(value)
            expressions += [Value(key), value]
        super().__init__(*expressions, output_field=JSONField())

    def _with_text_keys(self) -> JSONObject:
        clone = self.copy()
        # Keys (even positions) must be text for both databases.
        clone.set_source_expressions(
            [
                Cast(expr, TextField()) if index % 2 == 0 else expr
                for index, expr in enumerate(self.get_source_expressions())
            ]
        )
        return clone

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self._with_text_keys().as_sql(
            compiler, connection, function="jsonb_build_object", **extra
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="json_object", **extra)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_OBJECT", **extra)


class JSONArrayAppend(Func):
    """``array || [item]``: append one element to a JSON array column."""

    output_field = JSONField()
    arity = 2

    def __init__(self, array: str | Expression, item: Expression) -> None:
        source: Expression | F = F(array) if isinstance(array, str) else array
        super().__init__(source, item, output_field=JSONField())

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        array, item = self.get_source_expressions()
        array_sql, array_params = compiler.compile(array)
        item_sql, item_params = compiler.compile(item)
        return f"({array_sql} || jsonb_build_array({item_sql}))", [*array_params, *item_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        array, item = self.get_source_expressions()
        array_sql, array_params = compiler.compile(array)
        item_sql, item_params = compiler.compile(item)
        return f"json_insert({array_sql}, '$[#]', json({item_sql}))", [
            *array_params,
            *item_params,
        ]

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        array, item = self.get_source_expressions()
        array_sql, array_params = compiler.compile(array)
        item_sql, item_params = compiler.compile(item)
        # JSON_EXTRACT(x, '$'): the item as a JSON value (a JSON_OBJECT stays one).
        sql = f"JSON_ARRAY_APPEND({array_sql}, '$', JSON_EXTRACT({item_sql}, '$'))"
        return sql, [*array_params, *item_params]


class LastHistoryMessage(Func):
    """The ``message`` of the last element of the ``errors`` array, clipped to ``length``."""

    output_field = TextField()

    def __init__(self, length: int = 200) -> None:
        self.length = length
        super().__init__(F("errors"), output_field=TextField())

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (errors,) = self.get_source_expressions()
        sql, params = compiler.compile(errors)
        return f"left(({sql} -> -1) ->> 'message', %s)", [*params, self.length]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (errors,) = self.get_source_expressions()
        sql, params = compiler.compile(errors)
        return f"substr(json_extract({sql}, '$[#-1].message'), 1, %s)", [*params, self.length]

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (errors,) = self.get_source_expressions()
        sql, params = compiler.compile(errors)
        # ($[last] needs MariaDB 10.9: the index is computed instead.)
        path = f"CONCAT('$[', JSON_LENGTH({sql}) - 1, '].message')"
        return f"LEFT(JSON_UNQUOTE(JSON_EXTRACT({sql}, {path})), %s)", [
            *params,
            *params,
            self.length,
        ]


class JSONAppendToKey(Func):
    """``object[key] = (object[key] or []) + [item]`` on a JSON object column."""

    output_field = JSONField()
    arity = 2

    def __init__(self, column: str, key: str, item: Expression) -> None:
        self.key = key
        super().__init__(F(column), item, output_field=JSONField())

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, item = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        item_sql, item_params = compiler.compile(item)
        sql = (
            f"({column_sql} || jsonb_build_object(%s::text, "
            f"COALESCE({column_sql} -> %s::text, '[]'::jsonb) || jsonb_build_array({item_sql})))"
        )
        return sql, [*column_params, self.key, *column_params, self.key, *item_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, item = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        item_sql, item_params = compiler.compile(item)
        path = f"$.{self.key}"
        sql = (
            f"json_set({column_sql}, %s, json_insert(COALESCE(json_extract({column_sql}, %s), "
            f"json('[]')), '$[#]', json({item_sql})))"
        )
        return sql, [*column_params, path, *column_params, path, *item_params]

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, item = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        item_sql, item_params = compiler.compile(item)
        path = f"$.{self.key}"
        sql = (
            f"JSON_SET({column_sql}, %s, JSON_ARRAY_APPEND(COALESCE(JSON_EXTRACT({column_sql}, "
            f"%s), JSON_ARRAY()), '$', JSON_EXTRACT({item_sql}, '$')))"
        )
        return sql, [*column_params, path, *column_params, path, *item_params]


class TimestampText(Func):
    """A datetime column as ISO 8601 text (``2026-12-03T09:30:02.123456+00:00``, UTC).

    For history messages written by SQL: the same shape as the entries' ``at``.
    Under ``USE_TZ = False`` SQLite holds naive local times, shown without offset.
    """

    output_field = TextField()

    def __init__(self, column: str) -> None:
        super().__init__(F(column), output_field=TextField())

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (column,) = self.get_source_expressions()
        sql, params = compiler.compile(column)
        pattern = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
        return f"to_char({sql} AT TIME ZONE 'UTC', %s)", [*params, pattern]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        from django.conf import settings

        (column,) = self.get_source_expressions()
        sql, params = compiler.compile(column)
        suffix = "+00:00" if settings.USE_TZ else ""
        return f"(replace({sql}, ' ', 'T') || %s)", [*params, suffix]

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (column,) = self.get_source_expressions()
        sql, params = compiler.compile(column)
        return f"DATE_FORMAT({sql}, %s)", [*params, "%Y-%m-%dT%H:%i:%s.%f+00:00"]
