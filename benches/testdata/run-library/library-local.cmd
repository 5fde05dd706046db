library-local
