"""Sources of evidence. Each public module is one collector; ``copy`` is the engine that
every collector uses to store bytes, and ``context`` is what a collector is handed."""
