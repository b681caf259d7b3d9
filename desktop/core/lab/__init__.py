"""The lab: verification against the technicians' calls, site adaptation, grafted heads, site models."""
