upload-ssh
