using System.Runtime.InteropServices;

namespace Peft.Serialization;

/// <summary>
/// Checks that a path is (or, through symbolic links, resolves to) a regular file before a loader opens it: a directory,
/// a character device such as <c>/dev/zero</c>, a FIFO (whose open would block) or a socket is refused with a phrase
/// that says what it is, and a symbolic-link loop is reported as such instead of an <see cref="IOException"/>.
/// </summary>
internal static class RegularFile
{
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const int ELOOP = 40;
    private const int ENAMETOOLONG = 36;

    private const uint S_IFMT = 0xF000;
    private const uint S_IFREG = 0x8000;
    private const uint S_IFDIR = 0x4000;
    private const uint S_IFCHR = 0x2000;
    private const uint S_IFBLK = 0x6000;
    private const uint S_IFIFO = 0x1000;
    private const uint S_IFSOCK = 0xC000;

    /// <summary>
    /// <see langword="null"/> when <paramref name="fullPath"/> is a regular file (after following links); otherwise what
    /// it is instead, as a phrase ("a directory, not a file").
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing exists at the path (or a link points nowhere).</exception>
    internal static string? Problem(string fullPath)
    {
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64)
        {
            return LinuxProblem(fullPath);
        }

        // Elsewhere: what .NET can tell without native calls. The size caps of the readers still bound devices.
        if (Directory.Exists(fullPath)) return "a directory, not a file";
        if (File.Exists(fullPath)) return null;
        var info = new FileInfo(fullPath);
        if (info.LinkTarget is not null)
        {
            try
            {
                if (info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: false } target)
                {
                    throw new FileNotFoundException($"'{fullPath}' is a symbolic link to '{target.FullName}', which does not exist.", fullPath);
                }
            }
            catch (IOException e) when (e is not FileNotFoundException)
            {
                return $"a symbolic link that cannot be resolved ({e.Message})";
            }
        }
        throw new FileNotFoundException($"'{fullPath}' does not exist.", fullPath);
    }

    private static string? LinuxProblem(string fullPath)
    {
        var buffer = new byte[256];  // struct stat is 144 bytes on x86-64 and 128 on arm64
        int rc;
        try
        {
            rc = Stat(fullPath, buffer);
        }
        catch (EntryPointNotFoundException)
        {
            // glibc before 2.33 exports only __xstat (version 1 on x86-64, 0 on arm64).
            rc = XStat(RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 1 : 0, fullPath, buffer);
        }

        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno switch
            {
                ENOENT or ENOTDIR => throw new FileNotFoundException(
                    File.Exists(fullPath) || new FileInfo(fullPath).LinkTarget is not null
                        ? $"'{fullPath}' is a symbolic link to a path that does not exist."
                        : $"'{fullPath}' does not exist.", fullPath),
                ELOOP => "a symbolic link that cannot be resolved (a loop of links)",
                ENAMETOOLONG => "a path that is too long",
                _ => $"a path that cannot be examined (errno {errno})",
            };
        }

        // st_mode: after st_dev, st_ino and st_nlink (8 bytes each) on x86-64; after st_dev and st_ino on arm64.
        int offset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        uint mode = BitConverter.ToUInt32(buffer, offset);
        return (mode & S_IFMT) switch
        {
            S_IFREG => null,
            S_IFDIR => "a directory, not a file",
            S_IFCHR => "a character device (such as /dev/zero), not a regular file",
            S_IFBLK => "a block device, not a regular file",
            S_IFIFO => "a FIFO (named pipe), not a regular file",
            S_IFSOCK => "a socket, not a regular file",
            _ => "not a regular file",
        };
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code; these signatures marshal trivially.
    [DllImport("libc", EntryPoint = "stat", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int Stat(string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "__xstat", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int XStat(int version, string path, byte[] buffer);
#pragma warning restore SYSLIB1054
}
