//! Tests for COPY/ADD.
