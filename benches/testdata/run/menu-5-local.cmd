menu-5-local
