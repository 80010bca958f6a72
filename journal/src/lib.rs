//! retrace-journal
