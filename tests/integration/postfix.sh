# Postfix test harness (sourced, after lib.sh). Makes a CA and server
# certificates with the openssl CLI and runs one private Postfix instance
# inside a network namespace the caller created: its own config, queue and
# data directories under DIR, several smtpd listeners (one per address,
# each with its own TLS personality through master.cf -o overrides), and
# virtual(8) delivery of every test domain into maildirs. Nothing under
# /etc/postfix or the system queue is read for configuration or written.
# master runs in the foreground as a session leader whose PID we hold;
# everything it started is stopped by that process group on any exit.
#
#   pf_make_certs DIR [SANS]
#       DIR/ca.pem ca.key: the test CA; DIR/otherca.pem: an unrelated CA;
#       DIR/{good,expired,selfsigned,badname}.{pem,key}. good, expired and
#       selfsigned name SANS (comma list of DNS names, default
#       "*.pf.test,pf.test"); expired was valid 2020-01-01..2021-01-01;
#       selfsigned is its own issuer; badname is CA-signed for
#       wrong.invalid only.
#   pf_link CLIENT_NS SERVER_NS [CLIENT_IP]
#       veth pair between the two namespaces; the client end gets
#       CLIENT_IP/24 (default 198.19.20.1), the server end gets the
#       listener addresses from pf_start. Sets PF_CLIENT_IF, PF_SERVER_IF.
#   pf_start NS DIR LISTENER...
#       LISTENER is "ip=198.19.20.10;name=mx1.pf.test;tls=good;domains=a.test,b.test"
#       ip: required, added as /24 to $PF_SERVER_IF (or lo) in NS if absent
#       port: default 25; name: smtpd's myhostname (banner), default
#       mx.pf.test; tls: good (STARTTLS, CA-signed, TLS 1.2+1.3 offered)
#       | none (no STARTTLS) | expired | badname | selfsigned | tls10 (good
#       certificate, TLS 1.0 only); domains: recipient domains this
#       listener accepts (default: all of them). Every domain named by any
#       listener or in $PF_DOMAINS (comma or space list), plus pf.test
#       (postmaster, bounces), is delivered by
#       virtual(8) into maildirs under $PF_MAILDIR (default
#       $MP_TMP/maildir, owned by nobody): <domain>/<user>/ for addresses
#       given to pf_add_mailboxes, <domain>/_any/ for all others (or, with
#       PF_UNKNOWN=reject, those are refused at RCPT with 550: virtual(8)
#       takes mailbox paths only from static tables, no regexp
#       substitution, no socketmap). Certificates are taken from
#       DIR/certs (made by pf_make_certs if missing). TLS session cache and
#       tickets are on (tlsmgr), so a client can resume. Waits until every
#       listener sends its banner. Sets PF_MASTER_PID.
#   pf_add_mailboxes DIR ADDR... | DIR -f FILE
#       give each address its own maildir <domain>/<user>/; the table is
#       replaced by a rename, so every connection the instance accepts
#       after this returns sees the new addresses (pf_mailboxes_swap)
#   pf_stop DIR                       stop that instance (also done on exit)
#   pf_conf DIR                       its config_directory (for postconf -c)
#   pf_maildir_root DIR               its virtual_mailbox_base
#   pf_maildir_count DIR [DOMAIN]     delivered messages (new/ and cur/)
#   pf_wait_queue_empty DIR SECONDS   0 once incoming/active/deferred/... hold nothing
#   pf_wait_delivered DIR N SECONDS [DOMAIN]  0 once N messages are in the maildirs
#   pf_log DIR                        path of the instance's maillog
#
# PF_MAIN_EXTRA (optional): more main.cf lines, appended as they are (the
# demo lifts smtpd's error tarpit this way, so many 550s stay quick).
#
# A test names its namespaces with $MP_SUFFIX and uses addresses from
# 198.19.20.0/24 only.

PF_MAILDIR=${PF_MAILDIR:-$MP_TMP/maildir}
PF_DAEMON_DIR=${PF_DAEMON_DIR:-/usr/lib/postfix/sbin}
PF_DIRS=()
PF_CLIENT_IF=
PF_SERVER_IF=
# The queue and maildirs live under $MP_TMP, so the postfix and nobody
# users must be able to walk into it (mktemp made it 0700).
chmod 0711 "$MP_TMP"

pf_cleanup() {
	local d
	for d in "${PF_DIRS[@]}"; do
		pf_stop "$d"
	done
}
trap 'pf_cleanup; mp_cleanup' EXIT

# pf_cert_ext FILE SANS: v3 extensions of a server certificate.
pf_cert_ext() {
	local sans="" names x
	IFS=, read -ra names <<<"$2"
	for x in "${names[@]}"; do sans+="${sans:+,}DNS:$x"; done
	cat >"$1" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
}

pf_make_certs() {
	local d=$1 sans=${2:-*.pf.test,pf.test} ossl="openssl"
	local cn=${sans%%,*}
	mkdir -p "$d" || return 1
	(
		set -e
		cd "$d"
		key() { $ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
		# Two CAs: the one the servers chain to and one nobody uses.
		for ca in ca otherca; do
			key $ca.key
			$ossl req -x509 -new -key $ca.key -out $ca.pem -days 3650 -sha256 \
				-subj "/O=mailpump test/CN=mailpump $ca" \
				-addext "basicConstraints=critical,CA:TRUE" \
				-addext "keyUsage=critical,keyCertSign,cRLSign" \
				-addext "subjectKeyIdentifier=hash" 2>/dev/null
		done
		pf_cert_ext good.ext "$sans"
		pf_cert_ext badname.ext "wrong.invalid"
		for c in good expired selfsigned badname; do key $c.key; done
		for c in good expired badname; do
			subj="/O=mailpump test/CN=$cn"
			[ $c = badname ] && subj="/O=mailpump test/CN=wrong.invalid"
			$ossl req -new -key $c.key -out $c.csr -subj "$subj" 2>/dev/null
		done
		$ossl x509 -req -in good.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-days 825 -sha256 -extfile good.ext -out good.pem 2>/dev/null
		$ossl x509 -req -in badname.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-days 825 -sha256 -extfile badname.ext -out badname.pem 2>/dev/null
		# Expired: "openssl ca" is the 3.0 tool that takes explicit dates.
		mkdir -p ca.db
		: >ca.db/index.txt
		echo 1000 >ca.db/serial
		cat >ca.db/ca.cnf <<EOF
[ ca ]
default_ca = testca
[ testca ]
dir = $d/ca.db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $d/ca.pem
private_key = $d/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
organizationName = optional
commonName = supplied
EOF
		$ossl ca -batch -notext -config ca.db/ca.cnf -in expired.csr -out expired.pem \
			-startdate 20200101000000Z -enddate 20210101000000Z -extfile good.ext 2>/dev/null
		$ossl req -x509 -new -key selfsigned.key -out selfsigned.pem -days 825 -sha256 \
			-subj "/O=mailpump test/CN=$cn" -addext "subjectAltName=$(sed -n 's/^subjectAltName = //p' good.ext)" \
			-addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" 2>/dev/null
		chmod 0600 ./*.key
	) || { echo "pf_make_certs: openssl failed in $d" >&2; return 1; }
	# Each certificate must be what it claims to be.
	openssl verify -CAfile "$d/ca.pem" "$d/good.pem" >/dev/null 2>&1 || return 1
	openssl verify -CAfile "$d/ca.pem" "$d/badname.pem" >/dev/null 2>&1 || return 1
	openssl verify -CAfile "$d/ca.pem" "$d/expired.pem" 2>&1 | grep -q 'certificate has expired' || return 1
	openssl verify -CAfile "$d/ca.pem" "$d/selfsigned.pem" >/dev/null 2>&1 && return 1
	return 0
}

pf_link() {
	local cns=$1 sns=$2 cip=${3:-198.19.20.1}
	PF_CLIENT_IF=pfc$MP_SUFFIX
	PF_SERVER_IF=pfs$MP_SUFFIX
	ip link add "$PF_CLIENT_IF" netns "$cns" type veth peer name "$PF_SERVER_IF" netns "$sns" ||
		{ echo "pf_link: cannot create veth" >&2; return 1; }
	ip -n "$cns" addr add "$cip/24" dev "$PF_CLIENT_IF"
	ip -n "$cns" link set "$PF_CLIENT_IF" up
	ip -n "$sns" link set "$PF_SERVER_IF" up
}

pf_conf() { echo "$1/conf"; }
pf_log() { echo "$1/maillog"; }
pf_maildir_root() { postconf -c "$1/conf" -h virtual_mailbox_base; }

# pf_kv SPEC KEY [DEFAULT]: one field of a listener spec.
pf_kv() {
	local f x
	IFS=';' read -ra f <<<"$1"
	for x in "${f[@]}"; do
		[ "${x%%=*}" = "$2" ] && { echo "${x#*=}"; return 0; }
	done
	echo "${3-}"
}

pf_start() {
	local ns=$1 d=$2
	shift 2
	local conf=$d/conf certs=$d/certs spec ip port name tls doms x dev i=0 alldoms=" pf.test "
	for x in ${PF_DOMAINS:-}; do alldoms+="${x//,/ } "; done
	local ms=$conf/master.cf
	[ -f "$certs/good.pem" ] || pf_make_certs "$certs" || { echo "pf_start: certificates" >&2; return 1; }
	mkdir -p "$conf" "$d/queue" "$d/data" "$PF_MAILDIR" || return 1
	chmod 0755 "$d" "$d/queue"
	chown postfix:postfix "$d/data"
	chmod 0700 "$d/data"
	chown nobody:nogroup "$PF_MAILDIR"
	: >"$d/maillog"
	cat >"$ms" <<'EOF'
# Generated by tests/integration/postfix.sh; no chroot (paths are private).
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	for spec in "$@"; do
		i=$((i + 1))
		ip=$(pf_kv "$spec" ip)
		port=$(pf_kv "$spec" port 25)
		name=$(pf_kv "$spec" name mx.pf.test)
		tls=$(pf_kv "$spec" tls good)
		doms=$(pf_kv "$spec" domains)
		[ -n "$ip" ] || { echo "pf_start: listener $i has no ip: $spec" >&2; return 1; }
		{
			echo "$ip:$port inet n - n - - smtpd"
			echo "  -o syslog_name=postfix/l$i-$tls"
			echo "  -o myhostname=$name"
			case $tls in
			good | expired | badname | selfsigned)
				echo "  -o smtpd_tls_security_level=may"
				echo "  -o smtpd_tls_cert_file=$certs/$tls.pem"
				echo "  -o smtpd_tls_key_file=$certs/$tls.key"
				;;
			none)
				echo "  -o smtpd_tls_security_level=none"
				;;
			tls10)
				# OpenSSL 3 needs security level 0 for TLS 1.0's SHA-1 signatures.
				echo "  -o smtpd_tls_security_level=may"
				echo "  -o smtpd_tls_cert_file=$certs/good.pem"
				echo "  -o smtpd_tls_key_file=$certs/good.key"
				echo "  -o smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1.1,!TLSv1.2,!TLSv1.3"
				echo "  -o smtpd_tls_mandatory_protocols=!SSLv2,!SSLv3,!TLSv1.1,!TLSv1.2,!TLSv1.3"
				echo "  -o tls_medium_cipherlist=DEFAULT:@SECLEVEL=0"
				echo "  -o tls_high_cipherlist=DEFAULT:@SECLEVEL=0"
				;;
			*)
				echo "pf_start: listener $i: unknown tls=$tls" >&2
				return 1
				;;
			esac
			if [ -n "$doms" ]; then
				echo "  -o smtpd_recipient_restrictions=\$pf_rcpt_$i"
			fi
		} >>"$ms" || return 1
		if [ -n "$doms" ]; then
			tr ',' '\n' <<<"$doms" | sed 's/$/ OK/' >"$conf/rcpt_$i"
		fi
		for x in ${doms//,/ }; do
			case $alldoms in *" $x "*) ;; *) alldoms+="$x " ;; esac
		done
		if [ -n "$PF_SERVER_IF" ] && ip -n "$ns" link show "$PF_SERVER_IF" >/dev/null 2>&1; then
			dev=$PF_SERVER_IF
		else
			dev=lo
		fi
		ip -n "$ns" -4 addr show | grep -q "inet $ip/" ||
			ip -n "$ns" addr add "$ip/24" dev "$dev" || return 1
	done
	# virtual(8) allows neither regexp substitution nor socketmap/tcp
	# tables for mailbox paths, so mailboxes are a hash map: per-domain
	# catch-alls now, per-address entries from pf_add_mailboxes.
	: >"$conf/mailboxes"
	if [ "${PF_UNKNOWN:-catchall}" = catchall ]; then
		for x in $alldoms; do echo "@$x $x/_any/" >>"$conf/mailboxes"; done
	fi
	cat >"$conf/main.cf" <<EOF
# Generated by tests/integration/postfix.sh
compatibility_level = 3.6
config_directory = $conf
queue_directory = $d/queue
data_directory = $d/data
daemon_directory = $PF_DAEMON_DIR
mail_owner = postfix
setgid_group = postdrop
maillog_file = $d/maillog
maillog_file_prefixes = $d
myhostname = mx.pf.test
mydomain = pf.test
myorigin = pf.test
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 198.19.20.0/24
smtpd_peername_lookup = no
smtpd_banner = \$myhostname ESMTP mailpump-test
smtpd_relay_restrictions = reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
# RFC 5321 line endings are enforced, so a client sending bare LF fails.
smtpd_forbid_bare_newline = yes
smtpd_forbid_bare_newline_exclusions =
in_flow_delay = 0s
default_process_limit = 200
local_header_rewrite_clients =
# Nothing leaves this instance: foreign domains bounce locally.
default_transport = error:outbound mail disabled in the test harness
relay_transport = error:outbound mail disabled in the test harness
virtual_transport = virtual
virtual_mailbox_domains = $alldoms
virtual_mailbox_base = $PF_MAILDIR
virtual_mailbox_maps = hash:$conf/mailboxes
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
message_size_limit = 0
# TLS as an operator would run it: STARTTLS offered, TLS 1.2 and 1.3,
# server-side session cache and tickets (via tlsmgr) so clients resume.
smtpd_tls_security_level = may
smtpd_tls_cert_file = $certs/good.pem
smtpd_tls_key_file = $certs/good.key
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
smtpd_tls_session_cache_timeout = 3600s
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
tls_random_source = dev:/dev/urandom
EOF
	[ -n "${PF_MAIN_EXTRA:-}" ] && printf '%s\n' "$PF_MAIN_EXTRA" >>"$conf/main.cf"
	i=0
	for spec in "$@"; do
		i=$((i + 1))
		[ -f "$conf/rcpt_$i" ] &&
			echo "pf_rcpt_$i = check_recipient_access texthash:$conf/rcpt_$i, reject" >>"$conf/main.cf"
	done
	postmap -c "$conf" "hash:$conf/mailboxes" || return 1
	# Creates the queue directories with Postfix's own ownership rules.
	postfix -c "$conf" check >"$d/check.log" 2>&1 || {
		cat "$d/check.log" >&2
		echo "pf_start: postfix check failed" >&2
		return 1
	}
	# A session leader, so its process group holds every Postfix process.
	ip netns exec "$ns" setsid "$PF_DAEMON_DIR/master" -c "$conf" -d >"$d/master.log" 2>&1 &
	PF_MASTER_PID=$!
	echo "$PF_MASTER_PID" >"$d/master.pid"
	MP_PIDS+=("$PF_MASTER_PID")
	PF_DIRS+=("$d")
	for spec in "$@"; do
		ip=$(pf_kv "$spec" ip)
		port=$(pf_kv "$spec" port 25)
		mp_wait_for 20 pf_banner "$ns" "$ip" "$port" || {
			echo "pf_start: no banner from $ip:$port" >&2
			tail -n 20 "$d/maillog" "$d/master.log" >&2
			return 1
		}
	done
	return 0
}

# pf_banner NS IP PORT: the listener answers with a 220 greeting.
pf_banner() {
	ip netns exec "$1" timeout 3 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
ok = s.recv(512).startswith(b"220 ")
s.sendall(b"QUIT\r\n")
sys.exit(0 if ok else 1)' "$2" "$3"
}

pf_stop() { mp_stop_pidfile "$1/master.pid"; }

pf_add_mailboxes() {
	local d=$1 conf=$1/conf a
	shift
	[ -f "$conf/mailboxes" ] || { echo "pf_add_mailboxes: $d not started" >&2; return 1; }
	local list=("$@")
	if [ "${1-}" = -f ]; then
		mapfile -t list < <(grep -v '^[[:space:]]*$' "$2")
	fi
	for a in "${list[@]}"; do
		a=${a,,}
		# Only names that cannot leave the maildir root.
		[[ $a =~ ^[a-z0-9][a-z0-9._+=-]*@[a-z0-9][a-z0-9.-]*$ && $a != *..* ]] || {
			echo "pf_add_mailboxes: refusing address '$a'" >&2
			return 1
		}
		echo "$a ${a#*@}/${a%@*}/"
	done >>"$conf/mailboxes"
	pf_mailboxes_swap "$d"
}

# pf_mailboxes_swap DIR: rebuild the mailbox table under a new name and
# rename it into place. postmap rewrites a hash table in place, and a
# daemon notices a change only by the file's mtime in whole seconds or a
# link count of 0: an smtpd that opened the table in the same second as an
# in-place rebuild kept its stale Berkeley DB handle and rejected a share
# of the new users as unknown. A rename leaves every reader the old,
# consistent file (link count 0), so each smtpd and virtual(8) restarts
# before its next connection and opens the new one; a process still in
# a session finishes it on the old table.
pf_mailboxes_swap() {
	local conf=$1/conf
	cp "$conf/mailboxes" "$conf/mailboxes.next" || return 1
	postmap -c "$conf" "hash:$conf/mailboxes.next" || return 1
	# the test harness's self-test sets this to force the same-second case
	[ -n "${PF_TEST_MTIME:-}" ] && touch -m -d "@$PF_TEST_MTIME" "$conf/mailboxes.next.db"
	mv -f "$conf/mailboxes.next.db" "$conf/mailboxes.db" || return 1
	rm -f "$conf/mailboxes.next"
}

pf_maildir_count() {
	local root
	root=$(pf_maildir_root "$1") || return 1
	[ -n "${2-}" ] && root=$root/$2
	[ -d "$root" ] || { echo 0; return 0; }
	find "$root" -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l
}

pf_queue_count() {
	local q=$1/queue
	find "$q/incoming" "$q/active" "$q/deferred" "$q/maildrop" "$q/hold" -type f 2>/dev/null | wc -l
}

pf_wait_queue_empty() {
	local d=$1 t=$2
	for _ in $(seq $((t * 10))); do
		[ "$(pf_queue_count "$d")" -eq 0 ] && return 0
		sleep 0.1
	done
	return 1
}

pf_wait_delivered() {
	local d=$1 n=$2 t=$3 dom=${4-}
	for _ in $(seq $((t * 10))); do
		[ "$(pf_maildir_count "$d" ${dom:+"$dom"})" -ge "$n" ] && return 0
		sleep 0.1
	done
	return 1
}
