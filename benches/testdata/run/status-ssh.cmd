status-ssh
