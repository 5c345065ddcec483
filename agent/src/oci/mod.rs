//! The OCI container executor on runc.
