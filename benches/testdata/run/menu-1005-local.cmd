menu-1005-local
