package config

import (
	"strings"
	"testing"
)

func TestDigest(t *testing.T) {
	two := base + `  - name: api
    address: 198.18.0.20
    port: 443
    backends: [{address: 198.18.0.21}]
`
	digest := func(in string) string {
		t.Helper()
		c, err := Parse("t.yaml", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		return c.Digest()
	}
	d := digest(two)
	if len(d) != 64 {
		t.Fatalf("digest %q is not hex SHA-256", d)
	}
	same := map[string]string{
		"node-local fields": strings.Replace(two, "interface: eth0",
			"interface: eth1\n  pin_dir: /x\n  name: other\n  api_addr: '[::1]:1'\n  encap_source: 198.18.0.9", 1),
		"cluster section": two + "cluster: {secret_file: k, quorum: all}\n",
		"VIPs reordered": "node:\n  interface: eth0\nvips:\n" + strings.SplitAfter(two, "198.18.0.12\n")[1] +
			strings.SplitAfter(strings.SplitAfter(two, "vips:\n")[1], "198.18.0.12\n")[0],
		"backends reordered": strings.Replace(strings.Replace(two, "198.18.0.11", "TMP", 1), "198.18.0.12", "198.18.0.11", 1),
		"defaults written":   strings.Replace(two, "port: 80\n", "port: 80\n    protocol: tcp\n    ring_size: 65537\n    health: {type: tcp, port: 80}\n", 1),
	}
	same["backends reordered"] = strings.Replace(same["backends reordered"], "TMP", "198.18.0.12", 1)
	for name, in := range same {
		if got := digest(in); got != d {
			t.Errorf("%s changed the digest:\n%s", name, in)
		}
	}
	differ := map[string]string{
		"a weight":  strings.Replace(two, "- address: 198.18.0.12", "- address: 198.18.0.12\n        weight: 2", 1),
		"hash seed": strings.Replace(two, "interface: eth0", "interface: eth0\n  hash_seed: 1", 1),
		"a backend": strings.Replace(two, "198.18.0.21", "198.18.0.22", 1),
		"health":    strings.Replace(two, "port: 443\n", "port: 443\n    health: {fall: 3}\n", 1),
		"a name":    strings.Replace(two, "name: api", "name: api2", 1),
	}
	for name, in := range differ {
		if got := digest(in); got == d {
			t.Errorf("%s did not change the digest:\n%s", name, in)
		}
	}
}
