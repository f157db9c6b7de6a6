"""Server-rendered pages, one small module per area. Every read goes through the domain's
selectors and access helpers (or hub.web.queries); every write through its services."""
