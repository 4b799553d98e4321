using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Peft.Training.Checkpoints;

/// <summary>fsync of files and directories, and hashing, for atomic checkpoint writes.</summary>
internal static class DurableFiles
{
    private const int ReadOnly = 0;
    private const int DirectoryFlag = 0x10000; // O_DIRECTORY on Linux (x64 and arm64)

    /// <summary>Writes <paramref name="bytes"/> to a new file and flushes it to disk before returning.</summary>
    internal static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Flushes an existing file's data to disk.</summary>
    internal static void FlushFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Flushes a directory's entries (a rename or a new file in it) to disk. On Linux this is <c>fsync</c> on the
    /// directory; other systems have no portable equivalent and it does nothing there.
    /// </summary>
    internal static void FlushDirectory(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        int fd = Open(path, ReadOnly | DirectoryFlag);
        if (fd < 0)
        {
            throw new IOException($"Cannot open directory {path} to flush it to disk (errno {Marshal.GetLastPInvokeError()}).");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {path} failed (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>The SHA-256 of a file, lower-case hexadecimal.</summary>
    internal static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code; these three signatures marshal trivially.
    [DllImport("libc", EntryPoint = "open", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int Open(string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int Fsync(int fd);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int Close(int fd);
#pragma warning restore SYSLIB1054
}
