"""Bridges to other libraries' training loops (imported on demand; none is needed by the core package)."""
