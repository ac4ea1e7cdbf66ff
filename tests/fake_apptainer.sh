#!/bin/bash
# Recording stand-in for Apptainer, which cannot be installed on these machines (see
# tests/test_images_slurm.py). `pull [--disable-cache] DEST REF` writes a small file after a
# pause (so that concurrent pulls overlap; with FAKE_APPTAINER_FAIL_ONCE=FILE the first pull
# fails); `exec [opts] IMAGE CMD...` runs CMD on the host with
# --cleanenv semantics: an empty environment plus the APPTAINERENV_* variables, renamed.
set -u
log=${FAKE_APPTAINER_LOG:?}
case $1 in
  pull)
    shift
    [[ $1 == --disable-cache ]] && shift
    dest=$1 ref=$2
    pw=$(printf %s "${APPTAINER_DOCKER_PASSWORD:-}" | sha256sum | cut -c1-16)
    echo "pull $ref user=${APPTAINER_DOCKER_USERNAME:-} pw=$pw" >>"$log"
    if [[ -n ${FAKE_APPTAINER_FAIL_ONCE:-} && ! -e $FAKE_APPTAINER_FAIL_ONCE ]]; then
      touch "$FAKE_APPTAINER_FAIL_ONCE"
      echo "FATAL: While making image from oci registry: unauthorized" >&2
      exit 255
    fi
    sleep 3
    echo "fake sif of $ref" >"$dest"
    ;;
  exec)
    shift
    pwd_=.
    while [[ $1 == --* ]]; do
      case $1 in
        --pwd) pwd_=$2; shift 2 ;;
        --bind) shift 2 ;;
        *) shift ;;
      esac
    done
    image=$1
    shift
    echo "exec $image" >>"$log"
    vars=(PATH=/usr/bin:/bin)
    for name in $(compgen -e); do
      [[ $name == APPTAINERENV_* ]] && vars+=("${name#APPTAINERENV_}=${!name}")
    done
    cd "$pwd_" && exec env -i "${vars[@]}" "$@"
    ;;
  *) echo "fake apptainer: unsupported: $*" >&2; exit 2 ;;
esac
