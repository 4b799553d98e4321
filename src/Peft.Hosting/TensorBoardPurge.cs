using Peft.Checkpoints;
using System.Buffers.Binary;

namespace Peft.Hosting;

/// <summary>
/// Cuts TensorBoard event files back to a resumed run's checkpoint: every event whose step is after it is dropped, so the
/// steps the resumed run repeats appear once. Event files are TFRecord streams (<c>u64 length</c>, masked CRC of the
/// length, the <c>Event</c> protobuf, masked CRC of the data); kept records are copied byte for byte, so their CRCs
/// stay valid. A record cut short by a killed process ends the file there.
/// </summary>
internal static class TensorBoardPurge
{
    /// <summary>Rewrites every <c>events.out.tfevents.*</c> file in <paramref name="directory"/> (atomically, per file)
    /// without the events after <paramref name="lastKeptStep"/>; returns how many events were dropped.</summary>
    public static int Purge(string directory, long lastKeptStep)
    {
        if (!Directory.Exists(directory)) return 0;
        int dropped = 0;
        foreach (string path in Directory.GetFiles(directory, "events.out.tfevents.*"))
        {
            byte[] bytes = File.ReadAllBytes(path);
            using var kept = new MemoryStream(bytes.Length);
            int pos = 0, removed = 0;
            while (pos + 12 <= bytes.Length)
            {
                ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(pos, 8));
                long room = (long)bytes.Length - pos - 16;
                if (room < 0 || length > (ulong)room) break;   // truncated record: drop it and the rest
                int total = 12 + (int)length + 4;
                if (StepOf(bytes.AsSpan(pos + 12, (int)length)) is long step && step > lastKeptStep) removed++;
                else kept.Write(bytes, pos, total);
                pos += total;
            }
            bool truncated = pos != bytes.Length;
            if (removed == 0 && !truncated) continue;
            dropped += removed;
            AtomicFile.WriteAllBytes(path, kept.ToArray());
        }
        return dropped;
    }

    /// <summary>The <c>step</c> (field 2, varint) of an <c>Event</c> message, or null when it has none (the file-version
    /// event) or the bytes are not a well-formed message.</summary>
    internal static long? StepOf(ReadOnlySpan<byte> data)
    {
        int pos = 0;
        while (pos < data.Length)
        {
            if (!TryVarint(data, ref pos, out ulong key)) return null;
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0:
                    if (!TryVarint(data, ref pos, out ulong value)) return null;
                    if (field == 2) return (long)value;
                    break;
                case 1: pos += 8; break;
                case 5: pos += 4; break;
                case 2:
                    if (!TryVarint(data, ref pos, out ulong size) || size > (ulong)(data.Length - pos)) return null;
                    pos += (int)size;
                    break;
                default: return null;
            }
        }
        return null;
    }

    private static bool TryVarint(ReadOnlySpan<byte> data, ref int pos, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64 && pos < data.Length; shift += 7)
        {
            byte b = data[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return true;
        }
        return false;
    }
}
