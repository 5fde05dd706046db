library-ssh
