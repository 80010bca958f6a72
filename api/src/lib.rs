//! retrace-api: the HTTP + SSE server and the `retrace` command line.
