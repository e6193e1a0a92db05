//! Push invoice: a finished PSA invoice becomes exactly one Exact sales invoice.
