"""Records: the technician's unit of work — domain types, the store (the only SQL), the session, rescan."""
