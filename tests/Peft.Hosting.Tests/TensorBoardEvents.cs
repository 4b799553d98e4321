using System.Buffers.Binary;
using System.Text;

namespace Peft.Hosting.Tests;

/// <summary>One scalar read back from an event file.</summary>
public sealed record ScalarEvent(long Step, string Tag, float Value, double WallTime);

/// <summary>
/// An independent minimal reader of TensorBoard event files: TFRecord framing (u64 length, u32 masked CRC-32C of the
/// length, data, u32 masked CRC-32C of the data), then the Event protobuf (1 wall_time double, 2 step int64,
/// 3 file_version string, 5 summary { 1 value { 1 tag string, 2 simple_value float } }).
/// </summary>
public static class TensorBoardEvents
{
    private static readonly uint[] s_table = BuildTable();

    /// <summary>Reads every record, checking both CRCs; returns the file versions seen and the scalars.</summary>
    public static (List<string> FileVersions, List<ScalarEvent> Scalars) Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var versions = new List<string>();
        var scalars = new List<ScalarEvent>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            Assert.True(pos + 12 <= bytes.Length, $"{path}: truncated record header at {pos}");
            var lengthBytes = bytes.AsSpan(pos, 8);
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            Assert.Equal(MaskedCrc(lengthBytes), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 8, 4)));
            pos += 12;
            Assert.True(pos + (int)length + 4 <= bytes.Length, $"{path}: truncated record at {pos}");
            var data = bytes.AsSpan(pos, (int)length);
            Assert.Equal(MaskedCrc(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + (int)length, 4)));
            pos += (int)length + 4;
            ReadEvent(data.ToArray(), versions, scalars);
        }

        return (versions, scalars);
    }

    private static void ReadEvent(byte[] data, List<string> versions, List<ScalarEvent> scalars)
    {
        double wallTime = 0;
        long step = 0;
        var values = new List<(string Tag, float Value)>();
        foreach (var (field, wire, value, payload) in Fields(data))
        {
            switch (field, wire)
            {
                case (1, 1): wallTime = BitConverter.Int64BitsToDouble((long)value); break;
                case (2, 0): step = (long)value; break;
                case (3, 2): versions.Add(Encoding.UTF8.GetString(payload!)); break;
                case (5, 2):
                    foreach (var (f, w, _, summaryValue) in Fields(payload!))
                    {
                        if (f == 1 && w == 2)
                        {
                            string tag = string.Empty;
                            float simple = float.NaN;
                            foreach (var (vf, vw, vv, vp) in Fields(summaryValue!))
                            {
                                if (vf == 1 && vw == 2) tag = Encoding.UTF8.GetString(vp!);
                                if (vf == 2 && vw == 5) simple = BitConverter.Int32BitsToSingle((int)vv);
                            }

                            values.Add((tag, simple));
                        }
                    }

                    break;
            }
        }

        scalars.AddRange(values.Select(v => new ScalarEvent(step, v.Tag, v.Value, wallTime)));
    }

    private static IEnumerable<(int Field, int Wire, ulong Value, byte[]? Payload)> Fields(byte[] data)
    {
        int pos = 0;
        while (pos < data.Length)
        {
            ulong key = Varint(data, ref pos);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: yield return (field, wire, Varint(data, ref pos), null); break;
                case 1: yield return (field, wire, BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos, 8)), null); pos += 8; break;
                case 5: yield return (field, wire, BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos, 4)), null); pos += 4; break;
                case 2:
                    int n = (int)Varint(data, ref pos);
                    yield return (field, wire, 0, data.AsSpan(pos, n).ToArray());
                    pos += n;
                    break;
                default: throw new InvalidDataException($"unexpected protobuf wire type {wire}");
            }
        }
    }

    private static ulong Varint(byte[] data, ref int pos)
    {
        ulong result = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = data[pos++];
            result |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return result;
        }
    }

    private static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xffffffff;
        foreach (byte b in data) crc = s_table[(crc ^ b) & 0xff] ^ (crc >> 8);
        crc ^= 0xffffffff;
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78 ^ (c >> 1) : c >> 1;
            table[i] = c;
        }

        return table;
    }
}
