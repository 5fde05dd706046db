menu-1005-ssh
