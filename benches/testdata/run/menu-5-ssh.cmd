menu-5-ssh
