isos-ssh
