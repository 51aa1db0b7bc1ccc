"""The device trace is named and typed after the warehouse's `token_events` columns."""

from __future__ import annotations

import pyarrow as pa
import torch

from collector.decode.speculative import SPEC_COLUMNS, TraceBuffer
from collector.token_stats import STORED_FIELDS, TRACE_FIELDS, device_dtype
from warehouse.catalogue import EVENT_SCHEMA


def test_every_stored_field_is_an_event_column() -> None:
    assert set(STORED_FIELDS) <= set(EVENT_SCHEMA.names)
    assert set(SPEC_COLUMNS) <= set(EVENT_SCHEMA.names)


def test_buffer_dtypes_follow_the_columns_arrow_types_not_their_names() -> None:
    buf = TraceBuffer(2, 4, torch.device("cpu"))
    assert set(buf.data) == {*TRACE_FIELDS, *SPEC_COLUMNS}
    for name in STORED_FIELDS + SPEC_COLUMNS:
        arrow = EVENT_SCHEMA.field(name).type
        dtype = buf.data[name].dtype
        assert dtype.is_floating_point == pa.types.is_floating(arrow), name
        assert (dtype == torch.bool) == pa.types.is_boolean(arrow), name
    assert device_dtype("rel_pos") == torch.float32  # a float column with no float-sounding name
    assert device_dtype("step") == torch.long
