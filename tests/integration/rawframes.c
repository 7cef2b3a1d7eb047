/*
 * mp-rawframes: writes malformed Ethernet frames onto an interface through
 * an AF_PACKET socket, each kind `count` times, so a test can check that
 * the dataplane drops and counts every one by its reason. Prints one line
 * per kind, "<drop reason> <count>", matching dp_drop_names.
 *
 * usage: mp-rawframes IFACE DST_MAC SRC_IP DST_IP COUNT
 */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t
cksum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (; len >= 2; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A valid ICMP echo request of 60 bytes; kinds below break one thing. */
static size_t
echo(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t sip, uint32_t dip)
{
	memset(f, 0, 60);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, 0x0800);
	f[14] = 0x45;
	put16(f + 16, 20 + 8 + 18);
	put16(f + 20, 0x4000);
	f[22] = 64;
	f[23] = 1;
	memcpy(f + 26, &sip, 4);
	memcpy(f + 30, &dip, 4);
	put16(f + 24, cksum(f + 14, 20));
	f[34] = 8;
	memcpy(f + 42, "mailpump-malformed", 18);
	put16(f + 36, cksum(f + 34, 26));
	return 60;
}

static void
fix_ip(uint8_t *f)
{
	put16(f + 24, 0);
	put16(f + 24, cksum(f + 14, (size_t)(f[14] & 0xf) * 4));
}

int
main(int argc, char **argv)
{
	static const char *const kinds[] = {
		"ethertype", "ip_version", "ip_ihl", "ip_len", "ip_csum",
		"ip_frag", "ip_ttl", "ip_proto", "ip_dst", "icmp_csum",
		"tcp_trunc", "arp_malformed",
	};
	struct sockaddr_ll sll;
	uint8_t dst[6], src[6], f[128];
	struct ifreq ifr;
	uint32_t sip, dip;
	int fd, count;

	if (argc != 6 || sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0],
	    &dst[1], &dst[2], &dst[3], &dst[4], &dst[5]) != 6 ||
	    inet_pton(AF_INET, argv[3], &sip) != 1 ||
	    inet_pton(AF_INET, argv[4], &dip) != 1 || (count = atoi(argv[5])) <= 0 ||
	    count > 10000) {
		fprintf(stderr, "usage: %s IFACE DST_MAC SRC_IP DST_IP COUNT\n", argv[0]);
		return 2;
	}
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
		perror("SIOCGIFHWADDR");
		return 1;
	}
	memcpy(src, ifr.ifr_hwaddr.sa_data, 6);
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = (int)if_nametoindex(argv[1]);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, dst, 6);

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		for (int i = 0; i < count; i++) {
			size_t len = echo(f, dst, src, sip, dip);

			switch (k) {
			case 0: put16(f + 12, 0x88b5); break;
			case 1: f[14] = 0x65; break;
			case 2: f[14] = 0x44; break;
			case 3: put16(f + 16, 1000); fix_ip(f); break;
			case 4: f[25] ^= 0x5a; break;
			case 5: put16(f + 20, 0x2000); fix_ip(f); break;
			case 6: f[22] = 0; fix_ip(f); break;
			case 7: f[23] = 17; fix_ip(f); break;
			case 8: f[33] ^= 0x40; fix_ip(f); break;
			case 9: f[40] ^= 0xff; break;
			case 10: f[23] = 6; put16(f + 16, 20 + 10); fix_ip(f); break;
			case 11:
				put16(f + 12, 0x0806);
				put16(f + 14, 1);
				put16(f + 16, 0x0800);
				f[18] = 8;      /* hardware length 8: malformed */
				f[19] = 4;
				put16(f + 20, 1);
				break;
			}
			if (sendto(fd, f, len, 0, (struct sockaddr *)&sll,
			    sizeof(sll)) != (ssize_t)len) {
				perror("sendto");
				return 1;
			}
		}
		printf("%s %d\n", kinds[k], count);
	}
	close(fd);
	return 0;
}
