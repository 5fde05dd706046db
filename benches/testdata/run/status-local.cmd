status-local
