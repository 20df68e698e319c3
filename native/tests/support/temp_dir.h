// A fresh empty directory under /tmp for a test, removed with its files by the destructor; files() lists what is in
// it (a test of an atomic write checks that no temporary file is left behind).
#pragma once

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace fq::test {

struct TempDir {
    TempDir() {
        char tmpl[] = "/tmp/fq-test-XXXXXX";
        if (char *d = mkdtemp(tmpl)) path = d;
    }
    ~TempDir() {
        for (const std::string &f : files()) std::remove((path + "/" + f).c_str());
        rmdir(path.c_str());
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    std::vector<std::string> files() const {
        std::vector<std::string> out;
        if (DIR *d = opendir(path.c_str())) {
            while (dirent *e = readdir(d)) {
                const std::string n = e->d_name;
                if (n != "." && n != "..") out.push_back(n);
            }
            closedir(d);
        }
        return out;
    }
    std::string path;
};

}  // namespace fq::test
