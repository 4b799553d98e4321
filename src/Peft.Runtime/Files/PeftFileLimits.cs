namespace Peft.Serialization;

/// <summary>
/// Limits that every loader of this library applies to the JSON files it reads (<c>config.json</c>,
/// <c>model.safetensors.index.json</c>, <c>adapter_config.json</c>, a training checkpoint's <c>manifest.json</c>): a file
/// above <see cref="MaxJsonBytes"/> or nested deeper than <see cref="MaxJsonDepth"/> is refused with the file kind's
/// exception before it is parsed, so a damaged or hostile file (a link to <c>/dev/zero</c>, a huge file) cannot exhaust
/// memory. Process-wide; set them once at start-up if your files need more.
/// </summary>
public static class PeftFileLimits
{
    private static long s_maxJsonBytes = DefaultMaxJsonBytes;
    private static int s_maxJsonDepth = DefaultMaxJsonDepth;

    /// <summary>The default <see cref="MaxJsonBytes"/>: 8 MiB (a shard index of a 400B-parameter model is well under 1 MiB).</summary>
    public const long DefaultMaxJsonBytes = 8L << 20;

    /// <summary>The default <see cref="MaxJsonDepth"/>: 64, System.Text.Json's default.</summary>
    public const int DefaultMaxJsonDepth = 64;

    /// <summary>The largest JSON file, in bytes, a loader reads.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to less than 1.</exception>
    public static long MaxJsonBytes
    {
        get => Interlocked.Read(ref s_maxJsonBytes);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            Interlocked.Exchange(ref s_maxJsonBytes, value);
        }
    }

    /// <summary>The deepest nesting of objects and arrays a loader accepts in a JSON file.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to less than 1 or more than 1000.</exception>
    public static int MaxJsonDepth
    {
        get => Volatile.Read(ref s_maxJsonDepth);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 1000);
            Volatile.Write(ref s_maxJsonDepth, value);
        }
    }
}
