package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// artifactBucket holds Argo's artifacts, archived step logs among them.
	artifactBucket = "argo-artifacts"
	// artifactSecret holds the object store's keys, as Argo's artifactRepository names
	// them; it is kept in Argo's namespace and in every other (see secrets.go).
	artifactSecret = "argo-s3"
	// s3Region is what the store answers and Argo signs with.
	s3Region = "us-east-1"
)

// objectStoreKeys are the object store's root credentials, made once per state folder
// and kept there, like the API server's tokens.
type objectStoreKeys struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

func ensureObjectStoreKeys(path string) (objectStoreKeys, error) {
	var k objectStoreKeys
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &k); err != nil {
			return k, fmt.Errorf("%s: %w", path, err)
		}
		if k.AccessKey != "" && k.SecretKey != "" {
			return k, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	random := func(n int) (string, error) {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return hex.EncodeToString(b), nil
	}
	var err error
	if k.AccessKey, err = random(10); err != nil {
		return k, err
	}
	if k.SecretKey, err = random(20); err != nil {
		return k, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return k, err
	}
	return k, os.WriteFile(path, b, 0o600)
}

// objectStoreArgs runs MinIO on loopback only, its S3 API and its console (which MinIO
// insists on binding) each on a port of their own.
func objectStoreArgs(dataDir string, ports Ports) []string {
	return []string{
		"server", "--quiet",
		"--address=127.0.0.1:" + strconv.Itoa(ports.ObjectStore),
		"--console-address=127.0.0.1:" + strconv.Itoa(ports.ObjectStoreConsole),
		dataDir,
	}
}

func objectStoreEnv(k objectStoreKeys) []string {
	return []string{
		"MINIO_ROOT_USER=" + k.AccessKey,
		"MINIO_ROOT_PASSWORD=" + k.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
}

// objectStore is the launcher's client of the store.
type objectStore struct {
	client   *minio.Client
	endpoint string // host:port
	bucket   string
}

func newObjectStore(endpoint string, k objectStoreKeys) (*objectStore, error) {
	c, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(k.AccessKey, k.SecretKey, ""),
		Secure: false,
		Region: s3Region,
	})
	if err != nil {
		return nil, fmt.Errorf("object store client: %w", err)
	}
	return &objectStore{client: c, endpoint: endpoint, bucket: artifactBucket}, nil
}

// waitReady waits until the store answers ready, then makes the bucket when missing.
func (s *objectStore) waitReady(ctx context.Context, running func() bool, timeout time.Duration, logFile string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	err := waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if !running() {
			return errors.New("minio is not running")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.endpoint+"/minio/health/ready", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/minio/health/ready: %s", resp.Status)
		}
		exists, err := s.client.BucketExists(ctx, s.bucket)
		if err != nil || exists {
			return err
		}
		return s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s3Region})
	})
	if err != nil {
		return fmt.Errorf("object store not ready (see %s): %w", logFile, err)
	}
	return nil
}

// put stores one object.
func (s *objectStore) put(ctx context.Context, bucket, key string, data []byte, contentType string) error {
	_, err := s.client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}

func objectStoreDir(stateDir string) string { return filepath.Join(stateDir, "objectstore") }
