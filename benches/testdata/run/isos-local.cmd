isos-local
