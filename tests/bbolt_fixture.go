// Writes, with bbolt itself (go.etcd.io/bbolt), the two databases containerd keeps for
// its containers, laid out as containerd's metadata and overlayfs snapshotter write them
// (metadata/buckets.go, snapshots/storage/bolt.go), then prints every key of both files
// as bbolt's own cursors see them, one JSON line each, for tests/test_bbolt.py to
// compare with collectors/bbolt.py.
//
//	bbolt_fixture META_DB SNAPSHOTTER_DB [PODMAN_BOLT_STATE_DB]
//
// The third, when given, is Podman's older libpod database (libpod/boltdb_state*.go:
// bucket "ctr", one bucket per container with its "config" and "state" JSON).
//
// Besides the containerd layout it adds what makes a B+tree non-trivial: 400 containers
// in one namespace (branch pages), a 20 kB label (overflow pages) and small nested
// buckets (stored inline).
package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func uvarint(v uint64) []byte {
	buf := make([]byte, binary.MaxVarintLen64)
	return buf[:binary.PutUvarint(buf, v)]
}

func stamp(t time.Time) []byte {
	b, err := t.MarshalBinary()
	must(err)
	return b
}

func bucket(parent *bolt.Bucket, names ...string) *bolt.Bucket {
	b := parent
	for _, n := range names {
		var err error
		b, err = b.CreateBucketIfNotExists([]byte(n))
		must(err)
	}
	return b
}

func put(b *bolt.Bucket, k string, v []byte) { must(b.Put([]byte(k), v)) }

func container(ns *bolt.Bucket, id, image, key string, created time.Time) {
	c := bucket(ns, "containers", id)
	put(c, "image", []byte(image))
	put(c, "snapshotter", []byte("overlayfs"))
	put(c, "snapshotKey", []byte(key))
	put(c, "createdat", stamp(created))
	put(c, "updatedat", stamp(created.Add(time.Minute)))
	put(c, "spec", []byte("\x0a\x36types.containerd.io/opencontainers/runtime-spec/1/Spec"+
		"\x12{\"process\":{\"env\":[\"DB_PASSWORD=PLANTED-SPEC-SECRET\"]}}"))
	put(bucket(c, "runtime"), "name", []byte("io.containerd.runc.v2"))
	put(bucket(c, "labels"), "nerdctl/name", []byte(id))
}

func writeMeta(path string) {
	db, err := bolt.Open(path, 0o600, nil)
	must(err)
	defer db.Close()
	created := time.Date(2026, 11, 30, 22, 15, 0, 123456789, time.UTC)
	must(db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists([]byte("v1"))
		must(err)
		put(v1, "version", uvarint(3))
		def := bucket(v1, "default")
		container(def, "web1", "docker.io/library/nginx:1.25", "web1", created)
		snap := bucket(def, "snapshots", "overlayfs", "web1")
		put(snap, "name", []byte("default/7/web1"))
		put(snap, "parent", []byte("sha256:aaaa"))
		put(bucket(def, "snapshots", "overlayfs", "sha256:aaaa"), "name",
			[]byte("default/6/sha256:aaaa"))
		target := bucket(def, "images", "docker.io/library/nginx:1.25", "target")
		put(target, "digest", []byte("sha256:bbbb"))
		put(target, "mediatype", []byte("application/vnd.oci.image.index.v1+json"))
		k8s := bucket(v1, "k8s.io")
		for i := 0; i < 400; i++ {
			id := fmt.Sprintf("pod-%04d-%s", i, strings.Repeat("x", 40))
			container(k8s, id, "registry.k8s.io/pause:3.9", id, created)
		}
		put(bucket(k8s, "containers", "pod-0000-"+strings.Repeat("x", 40), "labels"),
			"big", []byte(strings.Repeat("L", 20000)))
		return nil
	}))
}

func writeSnapshotter(path string) {
	db, err := bolt.Open(path, 0o600, nil)
	must(err)
	defer db.Close()
	must(db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists([]byte("v1"))
		must(err)
		snaps := bucket(v1, "snapshots")
		active := bucket(snaps, "default/7/web1")
		put(active, "id", uvarint(7))
		put(active, "kind", []byte{2}) // snapshots.KindActive
		put(active, "parent", []byte("default/6/sha256:aaaa"))
		committed := bucket(snaps, "default/6/sha256:aaaa")
		put(committed, "id", uvarint(6))
		put(committed, "kind", []byte{3}) // snapshots.KindCommitted
		return nil
	}))
}

type row struct {
	Path  []string `json:"path"`
	Value *string  `json:"value"`
}

func dump(path string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	must(err)
	defer db.Close()
	out := json.NewEncoder(os.Stdout)
	var walk func(b *bolt.Bucket, prefix []string)
	walk = func(b *bolt.Bucket, prefix []string) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			p := append(append([]string{}, prefix...), hex.EncodeToString(k))
			if v == nil {
				must(out.Encode(row{p, nil}))
				walk(b.Bucket(k), p)
			} else {
				s := hex.EncodeToString(v)
				must(out.Encode(row{p, &s}))
			}
		}
	}
	must(db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			p := []string{hex.EncodeToString(name)}
			must(out.Encode(row{p, nil}))
			walk(b, p)
			return nil
		})
	}))
}

func writePodman(path string) {
	db, err := bolt.Open(path, 0o600, nil)
	must(err)
	defer db.Close()
	config := `{"id":"b0a7","name":"cache","rootfsImageID":"img9",` +
		`"rootfsImageName":"docker.io/library/redis:7","CreateCommand":["podman","run",` +
		`"--env=REDIS_PASSWORD=PLANTED-SPEC-SECRET","redis:7"],"spec":{"process":` +
		`{"args":["redis-server"],"env":["REDIS_PASSWORD=PLANTED-SPEC-SECRET"]}}}`
	must(db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists([]byte("ctr"))
		must(err)
		ctr := bucket(top, "b0a7")
		put(ctr, "config", []byte(config))
		put(ctr, "state", []byte(`{"state":6,"exitCode":137,"finishedTime":"2026-11-30T23:00:00Z"}`))
		return nil
	}))
}

func main() {
	if len(os.Args) > 3 {
		writePodman(os.Args[3])
	}
	writeMeta(os.Args[1])
	writeSnapshotter(os.Args[2])
	dump(os.Args[1])
	fmt.Println("--")
	dump(os.Args[2])
}
